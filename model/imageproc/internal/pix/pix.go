// Package pix holds the small helpers the image packages share: opaque RGB
// allocation and row-parallel loops.
package pix

import (
	"image"
	"runtime"
	"sync"
)

// NewRGB allocates an opaque w×h RGBA image at the origin.
func NewRGB(w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 3; i < len(m.Pix); i += 4 {
		m.Pix[i] = 0xff
	}
	return m
}

// MinRowsPerChunk is the fewest rows ParallelRows gives one goroutine.
const MinRowsPerChunk = 32

// ParallelRows runs fn over [0, n) split into contiguous chunks of at least
// MinRowsPerChunk rows, one goroutine per chunk, at most GOMAXPROCS chunks;
// it returns when all are done. fn must only write rows of its own chunk.
func ParallelRows(n int, fn func(lo, hi int)) {
	chunks := min(runtime.GOMAXPROCS(0), n/MinRowsPerChunk)
	if chunks <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := range chunks {
		lo, hi := i*n/chunks, (i+1)*n/chunks
		wg.Go(func() { fn(lo, hi) })
	}
	wg.Wait()
}
