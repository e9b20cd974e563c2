package jpeg

// This file replaces Go's dct.go: libjpeg-turbo's jpeg_idct_islow
// (jidctint.c, the default JDCT_ISLOW method; its SIMD versions give the
// same results), followed by its post-IDCT range limiting.

// block is one 8×8 block of coefficients in natural (not zig-zag) order.
type block [blockSize]int32

const blockSize = 8 * 8

const (
	constBits = 13
	pass1Bits = 2

	fix0_298631336 = 2446
	fix0_390180644 = 3196
	fix0_541196100 = 4433
	fix0_765366865 = 6270
	fix0_899976223 = 7373
	fix1_175875602 = 9633
	fix1_501321110 = 12299
	fix1_847759065 = 15137
	fix1_961570560 = 16069
	fix2_053119869 = 16819
	fix2_562915447 = 20995
	fix3_072711026 = 25172
)

// descale is libjpeg's DESCALE: divide by 2^n rounding half up.
func descale(x int64, n uint) int64 { return (x + 1<<(n-1)) >> n }

// rangeLimit is libjpeg's IDCT_range_limit lookup on the 10-bit masked
// value: [-128, 127] shifts to [0, 255], larger values saturate and, like
// libjpeg, values beyond ±512 wrap.
func rangeLimit(v int64) uint8 {
	m := v & 1023
	switch {
	case m < 128:
		return uint8(m + 128)
	case m < 512:
		return 255
	case m < 896:
		return 0
	}
	return uint8(m - 896)
}

// idctISLOW computes the inverse DCT of a dequantised block b and writes the
// 8×8 samples, level shifted and range limited, to dst with the given stride.
func idctISLOW(b *block, dst []byte, stride int) {
	var ws [blockSize]int64 // [8 × 8] intermediate, scaled by 2^pass1Bits

	// Pass 1: columns from input into ws.
	for c := range 8 {
		if b[8+c] == 0 && b[16+c] == 0 && b[24+c] == 0 && b[32+c] == 0 &&
			b[40+c] == 0 && b[48+c] == 0 && b[56+c] == 0 {
			dc := int64(b[c]) << pass1Bits
			for r := range 8 {
				ws[8*r+c] = dc
			}
			continue
		}
		o := butterfly(int64(b[c]), int64(b[8+c]), int64(b[16+c]), int64(b[24+c]),
			int64(b[32+c]), int64(b[40+c]), int64(b[48+c]), int64(b[56+c]))
		for r := range 8 {
			ws[8*r+c] = descale(o[r], constBits-pass1Bits)
		}
	}

	// Pass 2: rows from ws into the output.
	for r := range 8 {
		w := ws[8*r : 8*r+8]
		out := dst[r*stride : r*stride+8]
		if w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 0 && w[6] == 0 && w[7] == 0 {
			v := rangeLimit(descale(w[0], pass1Bits+3))
			for x := range out {
				out[x] = v
			}
			continue
		}
		o := butterfly(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7])
		for x := range out {
			out[x] = rangeLimit(descale(o[x], constBits+pass1Bits+3))
		}
	}
}

// butterfly is the shared body of both passes of jpeg_idct_islow: the
// 1-D IDCT of eight inputs, scaled by 2^constBits, before descaling.
func butterfly(i0, i1, i2, i3, i4, i5, i6, i7 int64) [8]int64 {
	// Even part.
	z1 := (i2 + i6) * fix0_541196100
	tmp2 := z1 + i6*-fix1_847759065
	tmp3 := z1 + i2*fix0_765366865
	tmp0 := (i0 + i4) << constBits
	tmp1 := (i0 - i4) << constBits
	tmp10, tmp13 := tmp0+tmp3, tmp0-tmp3
	tmp11, tmp12 := tmp1+tmp2, tmp1-tmp2

	// Odd part.
	tmp0, tmp1, tmp2, tmp3 = i7, i5, i3, i1
	z1 = tmp0 + tmp3
	z2 := tmp1 + tmp2
	z3 := tmp0 + tmp2
	z4 := tmp1 + tmp3
	z5 := (z3 + z4) * fix1_175875602
	tmp0 *= fix0_298631336
	tmp1 *= fix2_053119869
	tmp2 *= fix3_072711026
	tmp3 *= fix1_501321110
	z1 *= -fix0_899976223
	z2 *= -fix2_562915447
	z3 *= -fix1_961570560
	z4 *= -fix0_390180644
	z3 += z5
	z4 += z5
	tmp0 += z1 + z3
	tmp1 += z2 + z4
	tmp2 += z2 + z3
	tmp3 += z1 + z4

	return [8]int64{
		tmp10 + tmp3, tmp11 + tmp2, tmp12 + tmp1, tmp13 + tmp0,
		tmp13 - tmp0, tmp12 - tmp1, tmp11 - tmp2, tmp10 - tmp3,
	}
}
