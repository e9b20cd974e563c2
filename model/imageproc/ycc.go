package imageproc

import (
	"context"
	"image"
	"sync"

	"github.com/pancap-serve/pancap/model/imageproc/internal/jpeg"
)

// libwebp's YUV→RGB (dsp/yuv.h): 14-bit fixed point, YUV_FIX2 = 6.
func webpMultHi(v, coeff int32) int32 { return (v * coeff) >> 8 }

func webpClip8(v int32) uint8 {
	const mask = (256 << 6) - 1
	if v&^mask == 0 {
		return uint8(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}

// webpYCbCrToRGB converts a lossy WebP frame (4:2:0) as libwebp's default
// decoder does: its "fancy upsampler" (UpsampleRgbLinePair, 9-3-3-1 weights
// computed through two diagonal averages) and VP8YUVToR/G/B.
func webpYCbCrToRGB(ctx context.Context, m *image.YCbCr) (*image.RGBA, error) {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	cb, cr, _, _ := jpeg.ChromaPlanes(m)
	var rows sync.Pool // [2][w] chroma rows, one pair per goroutine at a time
	return rgbRows(ctx, w, h, func(dst []byte, y int) {
		uv, _ := rows.Get().(*[2][]int32)
		if uv == nil {
			uv = &[2][]int32{make([]int32, w), make([]int32, w)}
		}
		defer rows.Put(uv)
		uRow, vRow := uv[0], uv[1]
		// Output row 2k-1 lies between chroma rows k-1 (nearer) and k, row
		// 2k between k (nearer) and k-1; row 0, and an even height's last
		// row, see a single chroma row.
		near, far := 0, 0
		switch {
		case y == 0:
		case y&1 == 1:
			near, far = (y-1)/2, min((y+1)/2, cb.H-1)
		default:
			near, far = y/2, y/2-1
		}
		webpUpsampleRow(uRow, cb.Row(near), cb.Row(far))
		webpUpsampleRow(vRow, cr.Row(near), cr.Row(far))
		yRow := m.Y[m.YOffset(m.Rect.Min.X, m.Rect.Min.Y+y):]
		for x := 0; x < w; x++ {
			yy := webpMultHi(int32(yRow[x]), 19077)
			u, v := uRow[x], vRow[x]
			dst[4*x] = webpClip8(yy + webpMultHi(v, 26149) - 14234)
			dst[4*x+1] = webpClip8(yy - webpMultHi(u, 6419) - webpMultHi(v, 13320) + 8708)
			dst[4*x+2] = webpClip8(yy + webpMultHi(u, 33050) - 17685)
		}
	})
}

// webpUpsampleRow interpolates one output row's chroma from its nearer (n)
// and further (f) chroma rows exactly as libwebp's UPSAMPLE_FUNC does.
func webpUpsampleRow(dst []int32, n, f []byte) {
	w := len(dst)
	edge := func(k int) int32 { return (3*int32(n[k]) + int32(f[k]) + 2) >> 2 }
	dst[0] = edge(0)
	lastPair := (w - 1) >> 1
	for k := 1; k <= lastPair; k++ {
		tl, t := int32(n[k-1]), int32(n[k])
		l, c := int32(f[k-1]), int32(f[k])
		avg := tl + t + l + c + 8
		dst[2*k-1] = (((avg + 2*(t+l)) >> 3) + tl) >> 1
		dst[2*k] = (((avg + 2*(tl+c)) >> 3) + t) >> 1
	}
	if w&1 == 0 {
		dst[w-1] = edge(lastPair)
	}
}
