// Package pix holds the small helpers the image packages share: opaque RGB
// allocation and row-parallel loops.
package pix

import (
	"context"
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
	parallel(n, MinRowsPerChunk, fn)
}

// parallel is ParallelRows with chunks of at least minRows rows.
func parallel(n, minRows int, fn func(lo, hi int)) {
	chunks := min(runtime.GOMAXPROCS(0), n/minRows)
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

// checkWork is how many samples a ParallelRowsCtx goroutine processes
// between looks at its context (a few milliseconds of work at most).
const checkWork = 1 << 18

// ParallelRowsCtx is ParallelRows for a cancellable loop whose rows cost
// rowCost samples each: every goroutine looks at ctx before each group of
// rows worth checkWork samples (at least before every row) and stops once ctx
// is done; the call then returns ctx.Err(). A nil ctx is never done. Rows
// costly enough are spread over goroutines in chunks smaller than
// MinRowsPerChunk.
func ParallelRowsCtx(ctx context.Context, n, rowCost int, fn func(lo, hi int)) error {
	if ctx == nil {
		ParallelRows(n, fn)
		return nil
	}
	step := max(1, checkWork/max(rowCost, 1))
	// Rows worth a check interval each may go one goroutine apiece.
	parallel(n, min(MinRowsPerChunk, step), func(lo, hi int) {
		for y := lo; y < hi && ctx.Err() == nil; y += step {
			fn(y, min(y+step, hi))
		}
	})
	return ctx.Err()
}
