package linalg

// RoundF16 stores F32ToF16(src[i]) in dst[i] for every i < len(src): with
// the vector kernel where one is in use, bit for bit the same.
func RoundF16(dst []uint16, src []float32) {
	var vec func([]uint16, []float32) int
	if fast != nil {
		vec = fast.roundF16
	}
	round16(dst[:len(src)], src, F32ToF16, vec)
}

// RoundBF16 stores F32ToBF16(src[i]) in dst[i] for every i < len(src),
// like RoundF16.
func RoundBF16(dst []uint16, src []float32) {
	var vec func([]uint16, []float32) int
	if fast != nil {
		vec = fast.roundBF16
	}
	round16(dst[:len(src)], src, F32ToBF16, vec)
}

// round16 converts with vec (which stops at a vector holding a NaN, or at
// the last whole vector) and scalar for the rest of that vector or the
// tail, until done.
func round16(dst []uint16, src []float32, scalar func(float32) uint16, vec func([]uint16, []float32) int) {
	for i := 0; i < len(src); {
		if vec != nil {
			i += vec(dst[i:], src[i:])
		}
		end := len(src)
		if vec != nil {
			end = min(end, i+8)
		}
		for ; i < end; i++ {
			dst[i] = scalar(src[i])
		}
	}
}
