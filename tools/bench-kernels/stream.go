package main

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

// readBandwidth is the STREAM-like read test: all of linalg's workers read
// disjoint parts of a buffer far larger than the caches, each as eight
// sequential streams; it returns bytes per second.
func readBandwidth(minTime time.Duration) float64 {
	buf := make([]float32, (512<<20)/4)
	for i := range buf {
		buf[i] = float32(i & 1023)
	}
	part := func(lo, hi int) { C.read_streams((*C.float)(unsafe.Pointer(&buf[lo])), C.long(hi-lo)) }
	d := best(minTime, func(int) { linalg.Parallel(len(buf), part) })[0]
	return float64(len(buf)*4) / d.Seconds()
}
