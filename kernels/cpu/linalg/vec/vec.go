// Package vec holds small vector primitives for attention (Dot, Axpy) in Go
// assembly on x86-64 with AVX2, so that a call costs nanoseconds (a cgo call
// would cost more than a 64-element dot product). Portable Go elsewhere.
package vec

import "fmt"

// Dot returns Σ a[i]·b[i] over len(a) elements (b must be at least as
// long). The summation order depends only on len(a): vectorised with fma on
// x86-64 with AVX2 (four 8-lane accumulators and a fixed tree), four
// sequential partial sums elsewhere. Meant for attention scores; it
// allocates nothing.
func Dot(a, b []float32) float32 {
	if len(b) < len(a) {
		panic(fmt.Sprintf("vec: Dot of %d elements with len(b)=%d", len(a), len(b)))
	}
	return dot(a, b[:len(a)])
}

// Axpy computes y[i] += a·x[i] over len(y) elements (x must be at least as
// long), fused (one rounding) on x86-64 with AVX2. Each element is updated
// independently, so the result does not depend on the length.
func Axpy(a float32, x, y []float32) {
	if len(x) < len(y) {
		panic(fmt.Sprintf("vec: Axpy of %d elements with len(x)=%d", len(y), len(x)))
	}
	axpy(a, x[:len(y)], y)
}

// dotGo is the portable Dot: four partial sums over i mod 4, then
// (s0+s1)+(s2+s3).
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpyGo is the portable Axpy.
func axpyGo(a float32, x, y []float32) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] += a * v
	}
}
