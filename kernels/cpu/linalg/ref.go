package linalg

// goKC is the k block of the portable kernel: four widened weight rows of
// goKC floats (4 KiB) stay in L1 while every row of x runs against them.
const goKC = 256

// widener writes weights w[j][p0:p1] as fp32 into dst.
type widener func(dst []float32, j, p0, p1 int)

// widenF32 reads fp32 weights w[n×k].
func widenF32(w []float32, k int) widener {
	return func(dst []float32, j, p0, p1 int) { copy(dst, w[j*k+p0:j*k+p1]) }
}

// widenU16 widens 16-bit weights w[n×k] with f.
func widenU16(w []uint16, k int, f func(uint16) float32) widener {
	return func(dst []float32, j, p0, p1 int) {
		for i, v := range w[j*k+p0 : j*k+p1] {
			dst[i] = f(v)
		}
	}
}

// matMulGo is the portable kernel and the reference the vector kernels are
// tested against: out[m×n] = x[m×k] · w[n×k]ᵀ with each element summed
// sequentially over p = 0 … k-1 (kept in out between k blocks, so the
// blocking does not change the order). Columns go four at a time with four
// independent sums, weights widened once per block into a stack buffer.
func matMulGo(out, x []float32, m, n, k int, wide widener) {
	var wb [4][goKC]float32
	for j0 := 0; j0 < n; j0 += 4 {
		nj := min(4, n-j0)
		for p0 := 0; p0 < k; p0 += goKC {
			p1 := min(p0+goKC, k)
			kl := p1 - p0
			for c := range nj {
				wide(wb[c][:kl], j0+c, p0, p1)
			}
			for i := range m {
				xi := x[i*k+p0 : i*k+p1]
				o := out[i*n+j0 : i*n+j0+nj]
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
