// Package membw measures the machine's memory read bandwidth: the yardstick
// that the benchmarks of memory-bound work (`make bench-kernels`'s decode
// GEMVs, `make bench-model`'s decode step) divide their rates by, measured
// in the same run as they are.
package membw

/*
#cgo CFLAGS: -O3

// read_streams sums n floats at p as 8 concurrent sequential streams (one
// per eighth of the range) with 128-bit loads, which keeps enough cache
// misses in flight to saturate a core's share of the memory bandwidth.
static float read_streams(const float *p, long n) {
	typedef float v4 __attribute__((vector_size(16), aligned(4)));
	long s = n / 8 / 4 * 4;
	v4 a[8] = {0};
	for (long i = 0; i < s; i += 4)
		for (int j = 0; j < 8; j++)
			a[j] += *(const v4 *)(p + j * s + i);
	float t = 0;
	for (int j = 0; j < 8; j++)
		t += a[j][0] + a[j][1] + a[j][2] + a[j][3];
	return t;
}
*/
import "C"

import (
	"time"
	"unsafe"

	"github.com/pancap-serve/pancap/kernels/cpu/linalg"
)

// Bytes is the size of the benchmarks' probe: far more than any cache.
const Bytes = 512 << 20

// Probe is the STREAM-like read test: all of linalg's workers read
// disjoint parts of one buffer, each part as eight sequential streams.
type Probe struct {
	buf []float32 // [bytes/4]
}

// NewProbe allocates a probe of the given size and writes its buffer (a
// never-written one would read the kernel's shared zero page).
func NewProbe(bytes int) *Probe {
	p := &Probe{buf: make([]float32, bytes/4)}
	for i := range p.buf {
		p.buf[i] = float32(i & 1023)
	}
	return p
}

// Pass reads the buffer once and returns the rate in bytes per second.
func (p *Probe) Pass() float64 {
	t := time.Now()
	linalg.Parallel(len(p.buf), p.part)
	return float64(4*len(p.buf)) / time.Since(t).Seconds()
}

// Read reads the buffer at least three times and until minTime has passed,
// and returns the fastest pass in bytes per second.
func (p *Probe) Read(minTime time.Duration) float64 {
	p.part(0, len(p.buf)/64) // warm up the workers and the first pages' mappings
	best := 0.0
	for i, start := 0, time.Now(); i < 3 || time.Since(start) < minTime; i++ {
		best = max(best, p.Pass())
	}
	return best
}

// part reads p.buf[lo:hi].
func (p *Probe) part(lo, hi int) {
	C.read_streams((*C.float)(unsafe.Pointer(&p.buf[lo])), C.long(hi-lo))
}
