package linalg

import "github.com/pancap-serve/pancap/kernels/dtype"

// RoundF16 stores dtype.F32ToF16(src[i]) in dst[i] for every i < len(src): with
// the vector kernel where one is in use, bit for bit the same.
func RoundF16(dst []uint16, src []float32) {
	var vec func([]uint16, []float32) int
	if fast != nil {
		vec = fast.roundF16
	}
	round16(dst[:len(src)], src, dtype.F32ToF16, vec)
}

// RoundBF16 stores dtype.F32ToBF16(src[i]) in dst[i] for every i < len(src),
// like RoundF16.
func RoundBF16(dst []uint16, src []float32) {
	var vec func([]uint16, []float32) int
	if fast != nil {
		vec = fast.roundBF16
	}
	round16(dst[:len(src)], src, dtype.F32ToBF16, vec)
}

// round16 converts with vec, which stops at a vector holding a NaN or
// before the tail, then the rest of that vector with scalar, until done;
// all of it with scalar when vec is nil.
func round16(dst []uint16, src []float32, scalar func(float32) uint16, vec func([]uint16, []float32) int) {
	i := 0
	for vec != nil && i < len(src) {
		i += vec(dst[i:], src[i:])
		for end := min(len(src), i+8); i < end; i++ {
			dst[i] = scalar(src[i])
		}
	}
	for ; i < len(src); i++ {
		dst[i] = scalar(src[i])
	}
}
