package jpeg

import (
	"context"
	"image"

	"github.com/pancap-serve/pancap/model/imageproc/internal/pix"
)

// Chroma upsampling and YCbCr→RGB conversion as libjpeg-turbo's default
// decompressor does them. Converting the planes with Go's nearest-neighbour
// replication and color.YCbCrToRGB would differ from PIL on most edge pixels.

// chromaFactors returns how many luma samples one chroma sample spans
// horizontally and vertically.
func chromaFactors(r image.YCbCrSubsampleRatio) (h, v int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return 2, 1
	case image.YCbCrSubsampleRatio420:
		return 2, 2
	case image.YCbCrSubsampleRatio440:
		return 1, 2
	case image.YCbCrSubsampleRatio411:
		return 4, 1
	case image.YCbCrSubsampleRatio410:
		return 4, 2
	}
	return 1, 1
}

// Plane is an 8-bit sample plane of W×H valid samples with a row stride.
type Plane struct {
	Pix    []byte
	Stride int
	W, H   int
}

// Row returns the W valid samples of row y.
func (p Plane) Row(y int) []byte { return p.Pix[y*p.Stride : y*p.Stride+p.W] }

// ChromaPlanes returns the Cb and Cr planes of m limited to the samples that
// cover the image (libjpeg's downsampled_width/height: ceil(W·h/hmax)); the
// Go decoder's planes also hold MCU padding, which libjpeg never reads.
func ChromaPlanes(m *image.YCbCr) (cb, cr Plane, fh, fv int) {
	fh, fv = chromaFactors(m.SubsampleRatio)
	w, h := m.Rect.Dx(), m.Rect.Dy()
	cw, ch := (w+fh-1)/fh, (h+fv-1)/fv
	off := m.COffset(m.Rect.Min.X, m.Rect.Min.Y)
	cb = Plane{m.Cb[off:], m.CStride, cw, ch}
	cr = Plane{m.Cr[off:], m.CStride, cw, ch}
	return cb, cr, fh, fv
}

// libjpeg-turbo's ycc_rgb_convert tables (jdcolor.c, SCALEBITS 16).
var (
	jpegCrR, jpegCbB [256]int32
	jpegCrG, jpegCbG [256]int32
)

func init() {
	const scaleBits = 16
	fix := func(x float64) int32 { return int32(x*(1<<scaleBits) + 0.5) }
	const half = 1 << (scaleBits - 1)
	for i := range 256 {
		x := int32(i - 128)
		jpegCrR[i] = (fix(1.40200)*x + half) >> scaleBits
		jpegCbB[i] = (fix(1.77200)*x + half) >> scaleBits
		jpegCrG[i] = -fix(0.71414) * x
		jpegCbG[i] = -fix(0.34414)*x + half
	}
}

// rangeTab[v+256] is v clamped to [0, 255] (libjpeg's sample_range_limit),
// for v in [-256, 512).
var rangeTab [768]uint8

func init() {
	for i := range rangeTab {
		rangeTab[i] = uint8(min(max(i-256, 0), 255))
	}
}

// YCCToRGB converts a decoded JPEG as libjpeg-turbo's default
// decompressor does: "fancy" (triangle-filter) chroma upsampling for h2v1,
// h1v2 and h2v2 sampling (plain replication for the others and for chroma
// planes at most two samples wide), then the ISLOW colour tables.
// It stops with ctx's error once ctx is done (a nil ctx never is).
func YCCToRGB(ctx context.Context, m *image.YCbCr) (*image.RGBA, error) {
	out := pix.NewRGB(m.Rect.Dx(), m.Rect.Dy())
	err := pix.ParallelRowsCtx(ctx, m.Rect.Dy(), m.Rect.Dx(), func(lo, hi int) {
		yccRows(out, m, lo, hi)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// yccRows upsamples and converts rows [lo, hi) of m into out.
func yccRows(out *image.RGBA, m *image.YCbCr, lo, hi int) {
	w := m.Rect.Dx()
	cb, cr, fh, fv := ChromaPlanes(m)
	fancyH := fh == 2 && (fv == 1 || fv == 2) && cb.W > 2
	fancyV := fv == 2 && (fh == 1 || fancyH)
	// [fh·cb.W ≥ w] upsampled chroma of row y
	cbRow, crRow := make([]byte, fh*cb.W), make([]byte, fh*cb.W)
	tmpCb, tmpCr := make([]int32, cb.W), make([]int32, cb.W)
	for y := lo; y < hi; y++ {
		cy := y / fv
		if fancyV {
			// nearer chroma row weighs 3, the next-nearer (above for even
			// rows, below for odd ones, replicated at the edges) 1.
			far := cy - 1 + 2*(y&1)
			far = min(max(far, 0), cb.H-1)
			for i, p := range [2]Plane{cb, cr} {
				sum := [2][]int32{tmpCb, tmpCr}[i]
				near, fr := p.Row(cy), p.Row(far)
				for x := range sum {
					sum[x] = 3*int32(near[x]) + int32(fr[x])
				}
			}
			if fancyH {
				jpegFancyH2V2(cbRow, tmpCb)
				jpegFancyH2V2(crRow, tmpCr)
			} else {
				bias := int32(1 + y&1)
				for x := 0; x < w; x++ {
					cbRow[x] = uint8((tmpCb[x] + bias) >> 2)
					crRow[x] = uint8((tmpCr[x] + bias) >> 2)
				}
			}
		} else if fancyH {
			jpegFancyH2V1(cbRow, cb.Row(cy))
			jpegFancyH2V1(crRow, cr.Row(cy))
		} else {
			cbr, crr := cb.Row(cy), cr.Row(cy)
			for x := 0; x < w; x++ {
				cbRow[x], crRow[x] = cbr[x/fh], crr[x/fh]
			}
		}
		yRow := m.Y[m.YOffset(m.Rect.Min.X, m.Rect.Min.Y+y):]
		dst := out.Pix[y*out.Stride:]
		yRow, cbr, crr := yRow[:w], cbRow[:w], crRow[:w]
		dst = dst[:4*w]
		for x, yv := range yRow {
			yy, cbv, crv := int32(yv)+256, cbr[x], crr[x]
			dst[4*x] = rangeTab[yy+jpegCrR[crv]]
			dst[4*x+1] = rangeTab[yy+(jpegCbG[cbv]+jpegCrG[crv])>>16]
			dst[4*x+2] = rangeTab[yy+jpegCbB[cbv]]
		}
	}
}

// jpegFancyH2V1 is libjpeg-turbo's h2v1_fancy_upsample of one row: each
// output is 3/4 of the nearer input and 1/4 of the further, edges replicated,
// with alternating rounding biases 1 and 2. dst holds 2·len(src) samples.
func jpegFancyH2V1(dst []byte, src []byte) {
	n := len(src)
	dst = dst[:2*n]
	edge := func(j int) {
		c := 3 * int32(src[j])
		dst[2*j] = uint8((c + int32(src[max(j-1, 0)]) + 1) >> 2)
		dst[2*j+1] = uint8((c + int32(src[min(j+1, n-1)]) + 2) >> 2)
	}
	edge(0)
	for j := 1; j < n-1; j++ {
		c := 3 * int32(src[j])
		dst[2*j] = uint8((c + int32(src[j-1]) + 1) >> 2)
		dst[2*j+1] = uint8((c + int32(src[j+1]) + 2) >> 2)
	}
	edge(n - 1)
}

// jpegFancyH2V2 is the horizontal half of libjpeg-turbo's h2v2_fancy_upsample,
// applied to column sums 3·near+far of the vertical half, biases 8 and 7.
// dst holds 2·len(sum) samples.
func jpegFancyH2V2(dst []byte, sum []int32) {
	n := len(sum)
	dst = dst[:2*n]
	edge := func(j int) {
		c := 3 * sum[j]
		dst[2*j] = uint8((c + sum[max(j-1, 0)] + 8) >> 4)
		dst[2*j+1] = uint8((c + sum[min(j+1, n-1)] + 7) >> 4)
	}
	edge(0)
	for j := 1; j < n-1; j++ {
		c := 3 * sum[j]
		dst[2*j] = uint8((c + sum[j-1] + 8) >> 4)
		dst[2*j+1] = uint8((c + sum[j+1] + 7) >> 4)
	}
	edge(n - 1)
}
