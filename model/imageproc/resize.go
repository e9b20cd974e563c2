package imageproc

import (
	"image"
	"math"
)

// PIL 9.4's ImagingResample (libImaging/Resample.c) for 8-bit images:
// separable, horizontal pass first, each pass with coefficients computed in
// float64, normalised per output sample, then converted to fixed point with
// precisionBits fractional bits; the intermediate image is rounded and
// clipped to 8 bits between the passes.

const precisionBits = 32 - 8 - 2

// bicubic is PIL's bicubic filter, a = -0.5, support 2.
func bicubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return ((a+2)*x-(a+3))*x*x + 1
	}
	if x < 2 {
		return (((x-5)*x+8)*x - 4) * a
	}
	return 0
}

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

// clip8 is PIL's clip8: drop the fraction bits and saturate to [0, 255].
func clip8(v int32) uint8 {
	if v >= 1<<precisionBits<<8 {
		return 255
	}
	if v <= 0 {
		return 0
	}
	return uint8(v >> precisionBits)
}

// resizeBicubic resizes an RGB image (alpha ignored, output opaque) to w×h
// exactly as PIL 9.4's Image.resize((w, h), Image.BICUBIC) on an "RGB" image.
func resizeBicubic(src *image.RGBA, w, h int) *image.RGBA {
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	if sw == w && sh == h {
		out := newRGB(w, h)
		for y := range h {
			copy(out.Pix[y*out.Stride:y*out.Stride+4*w], src.Pix[src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+y):])
		}
		return out
	}
	cur := src
	vert := precomputeCoeffs(sh, h)
	if sw != w {
		// Only the source rows the vertical pass reads are resampled.
		first := vert.bounds[0]
		last := vert.bounds[2*h-2] + vert.bounds[2*h-1]
		tmp := newRGB(w, last-first)
		resampleHorizontal(tmp, src, first, precomputeCoeffs(sw, w))
		for i := range h {
			vert.bounds[2*i] -= first
		}
		cur = tmp
	}
	if sh == h {
		return cur
	}
	out := newRGB(w, h)
	resampleVertical(out, cur, vert)
	return out
}

// resampleHorizontal fills dst (rows of src starting at row offset) [dh × w].
func resampleHorizontal(dst, src *image.RGBA, offset int, c coeffs) {
	w := dst.Rect.Dx()
	for y := range dst.Rect.Dy() {
		in := src.Pix[src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+y+offset):]
		row := dst.Pix[y*dst.Stride:]
		for xx := range w {
			xmin, n := c.bounds[2*xx], c.bounds[2*xx+1]
			k := c.k[xx*c.ksize : xx*c.ksize+n]
			px := in[4*xmin : 4*(xmin+n)]
			s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
			for x, kx := range k {
				s0 += int32(px[4*x]) * kx
				s1 += int32(px[4*x+1]) * kx
				s2 += int32(px[4*x+2]) * kx
			}
			row[4*xx], row[4*xx+1], row[4*xx+2] = clip8(s0), clip8(s1), clip8(s2)
		}
	}
}

// resampleVertical fills dst [h × w] from the rows of src.
func resampleVertical(dst, src *image.RGBA, c coeffs) {
	w := dst.Rect.Dx()
	for yy := range dst.Rect.Dy() {
		ymin, n := c.bounds[2*yy], c.bounds[2*yy+1]
		k := c.k[yy*c.ksize : yy*c.ksize+n]
		row := dst.Pix[yy*dst.Stride:]
		for xx := range w {
			s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
			off := src.PixOffset(src.Rect.Min.X+xx, src.Rect.Min.Y+ymin)
			for _, ky := range k {
				s0 += int32(src.Pix[off]) * ky
				s1 += int32(src.Pix[off+1]) * ky
				s2 += int32(src.Pix[off+2]) * ky
				off += src.Stride
			}
			row[4*xx], row[4*xx+1], row[4*xx+2] = clip8(s0), clip8(s1), clip8(s2)
		}
	}
}
