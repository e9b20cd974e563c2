// Package linalg holds the CPU's dense linear-algebra primitives: matrix
// products against weights stored as fp32, bf16 or fp16, with fp32
// accumulation. Every output row is computed with the same reduction order
// whatever the number of rows, so a sequence's result never depends on the
// batch it runs in.
package linalg

import "math"

// BF16ToF32 widens a bfloat16 bit pattern.
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F16ToF32 widens an IEEE half-precision bit pattern.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		for man&0x400 == 0 {
			man <<= 1
			exp--
		}
		exp++
		man &= 0x3ff
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// MatMulF32 computes out[m×n] = x[m×k] · w[n×k]ᵀ.
func MatMulF32(out, x, w []float32, m, n, k int) {
	matMul(out, x, m, n, k, func(j, p int) float32 { return w[j*k+p] })
}

// MatMulBF16 computes out[m×n] = x[m×k] · w[n×k]ᵀ with w in bfloat16.
func MatMulBF16(out, x []float32, w []uint16, m, n, k int) {
	matMul(out, x, m, n, k, func(j, p int) float32 { return BF16ToF32(w[j*k+p]) })
}

// MatMulF16 computes out[m×n] = x[m×k] · w[n×k]ᵀ with w in float16.
func MatMulF16(out, x []float32, w []uint16, m, n, k int) {
	matMul(out, x, m, n, k, func(j, p int) float32 { return F16ToF32(w[j*k+p]) })
}

func matMul(out, x []float32, m, n, k int, wAt func(j, p int) float32) {
	for i := 0; i < m; i++ {
		xi := x[i*k : (i+1)*k]
		for j := 0; j < n; j++ {
			var s float32
			for p, v := range xi {
				s += v * wAt(j, p)
			}
			out[i*n+j] = s
		}
	}
}
