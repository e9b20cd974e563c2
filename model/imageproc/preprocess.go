package imageproc

import (
	"context"
	"fmt"
	"image"
)

// padColor is LLaVA's expand2square background: the CLIP mean times 255,
// truncated to integers.
var padColor = [3]uint8{122, 116, 104}

// CLIP normalisation constants (CLIPImageProcessor image_mean / image_std).
var (
	clipMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	clipStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// normLUT[c][v] is the normalised value of 8-bit sample v in channel c,
// computed as transformers does: v·(1/255) in float64, cast to float32,
// then (x − mean)/std in float32.
var normLUT [3][256]float32

func init() {
	for c := range 3 {
		for v := range 256 {
			x := float32(float64(v) * (1.0 / 255))
			normLUT[c][v] = (x - clipMean[c]) / clipStd[c]
		}
	}
}

// Result is a preprocessed image.
type Result struct {
	Pixels        []float32   // [3 × size × size] normalised, channel-major (CHW)
	Width, Height int         // size of the decoded image before padding
	Square        *image.RGBA // [size × size] the resized 8-bit image the pixels come from
}

// Preprocess decodes data (see Decode) and produces the vision tower's input
// as LLaVA-1.5 with image_aspect_ratio "pad" does: expand2square with
// padColor, then CLIPImageProcessor with shortest_edge = crop_size = size.
// After padding the image is square, so the shortest-edge resize yields
// size×size directly and the centre crop is the identity. Its cost is
// bounded by the decoded image, whatever its aspect ratio (the padding is
// never materialised); once ctx is done it stops within a bounded amount of
// work and returns an error wrapping ctx.Err().
func Preprocess(ctx context.Context, data []byte, size int, lim Limits) (Result, error) {
	if size <= 0 {
		return Result{}, fmt.Errorf("imageproc: preprocess size %d, want > 0", size)
	}
	img, err := decodeRGB(ctx, data, lim)
	if err != nil {
		return Result{}, err
	}
	sq, err := padAndResize(ctx, img, size)
	if err != nil {
		return Result{}, err
	}
	return Result{
		Pixels: normalize(sq),
		Width:  img.Rect.Dx(),
		Height: img.Rect.Dy(),
		Square: sq,
	}, nil
}

// resultBytes is what a Result of the given size holds.
func resultBytes(size int) int64 {
	return int64(size) * int64(size) * (3*4 + 4)
}

// normalize returns the CHW float32 tensor [3 × h × w] of an RGB image.
func normalize(img *image.RGBA) []float32 {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	n := w * h
	out := make([]float32, 3*n) // [3 × h × w]
	r, g, b := out[:n], out[n:2*n], out[2*n:]
	for y := range h {
		row := img.Pix[img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y):][:4*w]
		for x := range w {
			i := y*w + x
			r[i] = normLUT[0][row[4*x]]
			g[i] = normLUT[1][row[4*x+1]]
			b[i] = normLUT[2][row[4*x+2]]
		}
	}
	return out
}
