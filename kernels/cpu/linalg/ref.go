package linalg

import "github.com/pancap-serve/pancap/kernels/dtype"

// goKC is the k block of the portable kernel: four widened weight rows of
// goKC floats (4 KiB) stay in L1 while every row of x runs against them.
const goKC = 256

// weights is a weight matrix [n × k] of one of the three element types.
type weights struct {
	wt  wtype
	f32 []float32 // wF32
	u16 []uint16  // wBF16, wF16: bit patterns
}

// widen writes elements [off, off+len(dst)) as fp32 into dst.
func (w weights) widen(dst []float32, off int) {
	switch w.wt {
	case wF32:
		copy(dst, w.f32[off:off+len(dst)])
	case wBF16:
		for i, v := range w.u16[off : off+len(dst)] {
			dst[i] = dtype.BF16ToF32(v)
		}
	case wF16:
		for i, v := range w.u16[off : off+len(dst)] {
			dst[i] = dtype.F16ToF32(v)
		}
	}
}

// matMulGo is the portable kernel and the reference the vector kernels are
// tested against: columns [j0, j1) of out = x · wᵀ (shape and strides in
// g) with each element summed
// sequentially over p = 0 … k-1 (kept in out between k blocks, so the
// blocking does not change the order). Columns go four at a time with four
// independent sums, weights widened once per block into a stack buffer.
func matMulGo(out, x []float32, w weights, g gemmShape, j0, j1 int) {
	k := g.k
	var wb [4][goKC]float32
	for jt := j0; jt < j1; jt += 4 {
		nj := min(4, j1-jt)
		for p0 := 0; p0 < k; p0 += goKC {
			p1 := min(p0+goKC, k)
			kl := p1 - p0
			for c := range nj {
				w.widen(wb[c][:kl], (jt+c)*g.ldw+p0)
			}
			for i := range g.m {
				xi := x[i*g.ldx+p0 : i*g.ldx+p1]
				o := out[i*g.ldo+jt : i*g.ldo+jt+nj]
				if p0 == 0 {
					clear(o)
				}
				if nj < 4 {
					for c := range o {
						s, wc := o[c], wb[c][:kl]
						for p, v := range xi {
							s += v * wc[p]
						}
						o[c] = s
					}
					continue
				}
				s0, s1, s2, s3 := o[0], o[1], o[2], o[3]
				w0, w1, w2, w3 := wb[0][:kl], wb[1][:kl], wb[2][:kl], wb[3][:kl]
				for p, v := range xi {
					s0 += v * w0[p]
					s1 += v * w1[p]
					s2 += v * w2[p]
					s3 += v * w3[p]
				}
				o[0], o[1], o[2], o[3] = s0, s1, s2, s3
			}
		}
	}
}
