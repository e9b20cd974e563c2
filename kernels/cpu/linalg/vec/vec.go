// Package vec holds small vector primitives for the portable attention path
// (Dot, Axpy), the one used where linalg has no vector attention kernel: Go
// assembly on x86-64 with AVX2, so that a call costs nanoseconds, portable Go
// elsewhere.
package vec

import "fmt"

// Dot returns Σ a[i]·b[i] over len(a) elements (b must be at least as
// long), in exactly the order linalg's matrix products reduce one element
// over k = len(a): on x86-64 with AVX2, 8 fma lanes, a fixed tree and a
// sequential tail (bit for bit what linalg.MatMulF32 gives for that row and
// column); elsewhere a sequential sum, like linalg's portable kernel. So an
// attention score computed with Dot (decode) equals the one computed with a
// matrix product (prefill). Meant for attention; it allocates nothing.
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

// dotGo is the portable Dot: a sequential sum.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// axpyGo is the portable Axpy.
func axpyGo(a float32, x, y []float32) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] += a * v
	}
}
