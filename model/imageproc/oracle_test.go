package imageproc

import (
	"image"
	"math"
	"slices"

	"github.com/pancap-serve/pancap/model/imageproc/internal/pix"
)

// This file keeps the resize as it was before it learnt to skip the
// padding (commit d5c7e2f): the padded square's rows resampled whole, every
// tap multiplied. It is the oracle the streaming resize must equal byte for
// byte (TestResizeMatchesOracle); it is quadratic in the long side, so the
// tests give it small images only.

// coeffs are the fixed-point filter taps of one resampling direction.
type coeffs struct {
	ksize  int     // taps per output sample
	bounds []int   // [out × 2]: first input sample, number of taps
	k      []int32 // [out × ksize] fixed-point weights
}

// precomputeCoeffs is PIL's precompute_coeffs + normalize_coeffs_8bpc for
// resampling inSize samples onto outSize (box 0..inSize).
func precomputeCoeffs(inSize, outSize int) coeffs {
	scale := float64(inSize) / float64(outSize)
	filterScale := max(scale, 1)
	support := 2 * filterScale
	ksize := int(math.Ceil(support))*2 + 1
	c := coeffs{ksize: ksize, bounds: make([]int, 2*outSize), k: make([]int32, outSize*ksize)}
	w := make([]float64, ksize)
	for xx := range outSize {
		center := (float64(xx) + 0.5) * scale
		ss := 1 / filterScale
		xmin := max(int(center-support+0.5), 0)
		xmax := min(int(center+support+0.5), inSize) - xmin
		var ww float64
		for x := range xmax {
			w[x] = bicubic((float64(x+xmin) - center + 0.5) * ss)
			ww += w[x]
		}
		k := c.k[xx*ksize : xx*ksize+ksize]
		for x := range xmax {
			v := w[x]
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				k[x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				k[x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		c.bounds[2*xx], c.bounds[2*xx+1] = xmin, xmax
	}
	return c
}

// oracleClip8 is PIL's clip8: drop the fraction bits and saturate to [0, 255].
func oracleClip8(v int32) uint8 {
	if v >= 1<<precisionBits<<8 {
		return 255
	}
	if v <= 0 {
		return 0
	}
	return uint8(v >> precisionBits)
}

// oraclePadAndResize is LLaVA's expand2square followed by PIL 9.4's
// Image.resize((size, size), BICUBIC) on the "RGB" result, without
// materialising the padded square: the square's side is max(w, h), the image
// sits at ((side−w)/2, (side−h)/2), and every padding row has the same
// horizontal-pass output, computed once.
func oraclePadAndResize(img *image.RGBA, size int) *image.RGBA {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	side := max(w, h)
	ox, oy := (side-w)/2, (side-h)/2
	padRow := make([]byte, 3*side) // [side × 3] a row of pure padding
	for x := range side {
		copy(padRow[3*x:], padColor[:])
	}
	// fillRow returns padded source row y, using row [side × 3] (whose
	// padding columns already hold padColor) for the image rows.
	fillRow := func(row []byte, y int) []byte {
		if y < oy || y >= oy+h {
			return padRow
		}
		src := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y-oy):]
		dst := row[3*ox : 3*(ox+w)]
		for x := range w {
			dst[3*x], dst[3*x+1], dst[3*x+2] = src[4*x], src[4*x+1], src[4*x+2]
		}
		return row
	}
	out := pix.NewRGB(size, size)
	if side == size { // PIL returns a copy when the size does not change
		row := slices.Clone(padRow)
		for y := range size {
			r := fillRow(row, y)
			o := out.Pix[y*out.Stride:]
			for x := range size {
				o[4*x], o[4*x+1], o[4*x+2] = r[3*x], r[3*x+1], r[3*x+2]
			}
		}
		return out
	}
	c := precomputeCoeffs(side, size) // the same taps serve both directions
	// Horizontal pass over the source rows the vertical pass reads.
	first := c.bounds[0]
	last := c.bounds[2*size-2] + c.bounds[2*size-1]
	tmp := make([]byte, (last-first)*3*size) // [rows × size × 3]
	padOut := make([]byte, 3*size)           // [size × 3] horizontal pass of padRow
	resampleRow(padOut, padRow, c)
	pix.ParallelRows(last-first, func(lo, hi int) {
		row := make([]byte, 3*side) // [side × 3] the padded source row
		copy(row, padRow)
		for y := first + lo; y < first+hi; y++ {
			dst := tmp[(y-first)*3*size : (y-first+1)*3*size]
			if y < oy || y >= oy+h {
				copy(dst, padOut)
				continue
			}
			resampleRow(dst, fillRow(row, y), c)
		}
	})
	// Vertical pass, accumulating whole rows for sequential memory access.
	pix.ParallelRows(size, func(lo, hi int) {
		acc := make([]int32, 3*size) // [size × 3]
		for yy := lo; yy < hi; yy++ {
			ymin, n := c.bounds[2*yy]-first, c.bounds[2*yy+1]
			for i := range acc {
				acc[i] = 1 << (precisionBits - 1)
			}
			for t, k := range c.k[yy*c.ksize : yy*c.ksize+n] {
				src := tmp[(ymin+t)*3*size : (ymin+t+1)*3*size]
				src = src[:len(acc)]
				for i, v := range src {
					acc[i] += int32(v) * k
				}
			}
			o := out.Pix[yy*out.Stride : yy*out.Stride+4*size]
			for x := range size {
				o[4*x], o[4*x+1], o[4*x+2] = oracleClip8(acc[3*x]), oracleClip8(acc[3*x+1]), oracleClip8(acc[3*x+2])
			}
		}
	})
	return out
}

// resampleRow is PIL's horizontal 8-bit pass over one packed RGB row:
// dst [out × 3] from src [in × 3].
func resampleRow(dst, src []byte, c coeffs) {
	for xx := range len(dst) / 3 {
		xmin, n := c.bounds[2*xx], c.bounds[2*xx+1]
		k := c.k[xx*c.ksize : xx*c.ksize+n]
		px := src[3*xmin : 3*(xmin+n)]
		px = px[:3*len(k)]
		s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
		for x, kx := range k {
			s0 += int32(px[3*x]) * kx
			s1 += int32(px[3*x+1]) * kx
			s2 += int32(px[3*x+2]) * kx
		}
		dst[3*xx], dst[3*xx+1], dst[3*xx+2] = oracleClip8(s0), oracleClip8(s1), oracleClip8(s2)
	}
}
