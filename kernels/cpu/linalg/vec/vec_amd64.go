package vec

import "golang.org/x/sys/cpu"

// hasVecAVX2 selects the assembly Dot and Axpy (AVX2 + FMA).
var hasVecAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func dotAVX2(a, b *float32, n int) float32

//go:noescape
func axpyAVX2(a float32, x, y *float32, n int)

func dot(a, b []float32) float32 {
	if hasVecAVX2 && len(a) > 0 {
		return dotAVX2(&a[0], &b[0], len(a))
	}
	return dotGo(a, b)
}

func axpy(a float32, x, y []float32) {
	if hasVecAVX2 && len(y) > 0 {
		axpyAVX2(a, &x[0], &y[0], len(y))
		return
	}
	axpyGo(a, x, y)
}
