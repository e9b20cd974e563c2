package imageproc

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/png"

	"github.com/pancap-serve/pancap/model/imageproc/internal/jpeg"
	"github.com/pancap-serve/pancap/model/imageproc/internal/pix"
	"github.com/pancap-serve/pancap/model/imageproc/internal/webp"
)

// format is a container format recognised by its leading bytes.
type format int

const (
	formatUnknown format = iota
	formatJPEG
	formatPNG
	formatGIF
	formatWebP
)

func (f format) String() string {
	return [...]string{"unknown", "jpeg", "png", "gif", "webp"}[f]
}

// sniff names the format from the magic bytes at the start of data.
func sniff(data []byte) format {
	switch {
	case bytes.HasPrefix(data, []byte("\xff\xd8\xff")):
		return formatJPEG
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return formatPNG
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return formatGIF
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return formatWebP
	}
	return formatUnknown
}

// Decode decodes a JPEG, PNG, GIF (first frame) or WebP image and converts it
// to RGB exactly as PIL 9.4's Image.open(...).convert("RGB") does: alpha is
// dropped (not composited), grey is replicated, palettes are looked up,
// 16-bit RGB keeps the high byte, 16-bit grey is clipped to 255, CMYK uses
// PIL's formula. The limits are checked on the headers (see Inspect) before
// any pixels are allocated. The result is an *image.RGBA with alpha 255 and
// Rect at (0,0). Once ctx is done, decoding stops within a bounded amount of
// work and Decode returns an error wrapping ctx.Err() (and no sentinel).
func Decode(ctx context.Context, data []byte, lim Limits) (image.Image, error) {
	img, err := decodeRGB(ctx, data, lim)
	if err != nil {
		return nil, err
	}
	return img, nil
}

// decodeRGB is Decode with its concrete result type.
func decodeRGB(ctx context.Context, data []byte, lim Limits) (*image.RGBA, error) {
	h, err := inspect(data, lim)
	if err != nil {
		return nil, err
	}
	if err := canceled(ctx); err != nil {
		return nil, err
	}
	img, err := decodeImage(ctx, h, data)
	var rgb *image.RGBA
	if err == nil {
		rgb, err = convertRGB(ctx, h, data, img)
	}
	if ctxErr := canceled(ctx); ctxErr != nil {
		return nil, ctxErr // whatever the decoder made of the failed Read
	}
	if err != nil {
		return nil, err
	}
	return rgb, nil
}

// decodeImage runs the format's decoder, which reads through a ctxReader
// (JPEG's looks at ctx itself).
func decodeImage(ctx context.Context, h header, data []byte) (image.Image, error) {
	r := ctxReader{ctx, bytes.NewReader(data)}
	var (
		img image.Image
		err error
	)
	switch h.f {
	case formatJPEG:
		img, err = jpeg.Decode(ctx, bytes.NewReader(data), h.jpegLim)
	case formatPNG:
		img, err = png.Decode(r)
	case formatGIF:
		img, err = gif.Decode(r)
	case formatWebP:
		img, err = webp.DecodeContext(ctx, r)
	}
	if err != nil {
		return nil, decodeError(h.f, err)
	}
	if b := img.Bounds(); h.f != formatGIF && (b.Dx() != h.Width || b.Dy() != h.Height) {
		return nil, fmt.Errorf("%w: decode %v: header says %d×%d, pixels are %d×%d",
			ErrCorrupt, h.f, h.Width, h.Height, b.Dx(), b.Dy())
	}
	return img, nil
}

// convertRGB converts a decoded image to opaque RGB as PIL does.
func convertRGB(ctx context.Context, h header, data []byte, img image.Image) (*image.RGBA, error) {
	switch h.f {
	case formatGIF:
		p, ok := img.(*image.Paletted)
		if !ok {
			return nil, fmt.Errorf("%w: decode gif: unexpected %T", ErrCorrupt, img)
		}
		return gifToRGB(ctx, p, h.gifHead, h.Width, h.Height)
	case formatJPEG:
		switch m := img.(type) {
		case *image.YCbCr:
			return jpeg.YCCToRGB(ctx, m)
		case *image.CMYK:
			return cmykToRGB(ctx, m)
		}
	case formatWebP:
		switch m := img.(type) {
		case *image.YCbCr:
			return webpYCbCrToRGB(ctx, m)
		case *image.NYCbCrA:
			return webpYCbCrToRGB(ctx, &m.YCbCr)
		}
	case formatPNG:
		if h.gray16 {
			return gray16ToRGB(ctx, img)
		}
		if p, ok := img.(*image.Paletted); ok {
			p.Palette = p.Palette[:min(len(p.Palette), pngPaletteLen(data))]
		}
	}
	return toRGB(ctx, img)
}

// toRGB converts the image types whose PIL conversion is a per-pixel function
// of the stored, non-premultiplied values. Premultiplied types are never
// produced by the decoders, so every colour is read straight from storage.
func toRGB(ctx context.Context, img image.Image) (*image.RGBA, error) {
	b := img.Bounds()
	w := b.Dx()
	var lut []byte
	if m, ok := img.(*image.Paletted); ok {
		lut = paletteLUT(paletteRGB(m.Palette, len(m.Palette)))
	}
	return rgbRows(ctx, w, b.Dy(), func(row []byte, y int) {
		switch m := img.(type) {
		case *image.Gray:
			for x, v := range m.Pix[y*m.Stride : y*m.Stride+w] {
				row[4*x], row[4*x+1], row[4*x+2] = v, v, v
			}
		case *image.NRGBA:
			src := m.Pix[y*m.Stride : y*m.Stride+4*w]
			for x := 0; x < 4*w; x += 4 {
				row[x], row[x+1], row[x+2] = src[x], src[x+1], src[x+2]
			}
		case *image.RGBA: // opaque RGB (PNG truecolour without tRNS, Adobe RGB JPEG)
			src := m.Pix[y*m.Stride : y*m.Stride+4*w]
			for x := 0; x < 4*w; x += 4 {
				row[x], row[x+1], row[x+2] = src[x], src[x+1], src[x+2]
			}
		case *image.NRGBA64: // PIL unpacks 16-bit samples by their high byte
			src := m.Pix[y*m.Stride : y*m.Stride+8*w]
			for x := 0; x < w; x++ {
				row[4*x], row[4*x+1], row[4*x+2] = src[8*x], src[8*x+2], src[8*x+4]
			}
		case *image.RGBA64: // opaque 16-bit RGB
			src := m.Pix[y*m.Stride : y*m.Stride+8*w]
			for x := 0; x < w; x++ {
				row[4*x], row[4*x+1], row[4*x+2] = src[8*x], src[8*x+2], src[8*x+4]
			}
		case *image.Paletted:
			for x, i := range m.Pix[y*m.Stride : y*m.Stride+w] {
				copy(row[4*x:4*x+3], lut[3*int(i):3*int(i)+3])
			}
		default:
			for x := 0; x < w; x++ {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				row[4*x], row[4*x+1], row[4*x+2] = c.R, c.G, c.B
			}
		}
	})
}

// rgbRows allocates an opaque w×h RGB image and fills it by calling
// fill(row, y) for every row y (row is [w × 4]), rows in parallel; it looks
// at ctx between groups of rows and stops with ctx's error once it is done.
func rgbRows(ctx context.Context, w, h int, fill func(row []byte, y int)) (*image.RGBA, error) {
	out := pix.NewRGB(w, h)
	err := pix.ParallelRowsCtx(ctx, h, w, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			fill(out.Pix[y*out.Stride:y*out.Stride+4*w], y)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("imageproc: %w", err)
	}
	return out, nil
}

// paletteLUT returns the 256-entry RGB lookup table PIL uses for a palette
// of len(rgb)/3 stored colours (transparency ignored, as PIL's "P" to "RGB"
// conversion does): PIL's palettes start as the grey ramp (i, i, i), so
// indices past the stored entries map to grey, not black.
func paletteLUT(rgb []byte) []byte {
	lut := make([]byte, 3*256)
	for i := range 256 {
		lut[3*i], lut[3*i+1], lut[3*i+2] = byte(i), byte(i), byte(i)
	}
	copy(lut, rgb[:min(len(rgb), len(lut))])
	return lut
}

// paletteRGB returns the stored RGB triplets of the first n palette entries.
func paletteRGB(p color.Palette, n int) []byte {
	rgb := make([]byte, 0, 3*n)
	for _, c := range p[:min(n, len(p))] {
		switch c := c.(type) {
		case color.RGBA:
			rgb = append(rgb, c.R, c.G, c.B)
		case color.NRGBA:
			rgb = append(rgb, c.R, c.G, c.B)
		default:
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			rgb = append(rgb, n.R, n.G, n.B)
		}
	}
	return rgb
}

// pngPaletteLen returns the number of entries of a PNG's PLTE chunk (0 if
// it has none before the image data). Go's decoder pads the palette with
// opaque black up to the largest index used; PIL does not.
func pngPaletteLen(data []byte) int {
	for pos := 8; pos+8 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[pos:]))
		switch string(data[pos+4 : pos+8]) {
		case "PLTE":
			return n / 3
		case "IDAT":
			return 0
		}
		if n < 0 || n > len(data) {
			return 0
		}
		pos += 12 + n
	}
	return 0
}

// gray16ToRGB converts a 16-bit greyscale PNG: PIL opens it as mode "I" and
// its I→RGB conversion clips each value to [0, 255] (it does not rescale).
// The Go decoder returns *image.Gray16, or *image.NRGBA64 when the PNG has a
// tRNS chunk; both store the grey value big-endian in the first sample.
func gray16ToRGB(ctx context.Context, img image.Image) (*image.RGBA, error) {
	var (
		samples []byte
		stride  int
		step    int
	)
	switch m := img.(type) {
	case *image.Gray16:
		samples, stride, step = m.Pix, m.Stride, 2
	case *image.NRGBA64:
		samples, stride, step = m.Pix, m.Stride, 8
	default:
		return toRGB(ctx, img)
	}
	b := img.Bounds()
	return rgbRows(ctx, b.Dx(), b.Dy(), func(row []byte, y int) {
		src := samples[y*stride:]
		for x := range len(row) / 4 {
			v := uint8(255)
			if src[step*x] == 0 {
				v = src[step*x+1]
			}
			row[4*x], row[4*x+1], row[4*x+2] = v, v, v
		}
	})
}

// cmykToRGB applies PIL's cmyk2rgb to Go's (already de-inverted) CMYK:
// nk = 255-K; out = nk - C·nk/255 with PIL's rounding MULDIV255.
func cmykToRGB(ctx context.Context, m *image.CMYK) (*image.RGBA, error) {
	b := m.Bounds()
	w := b.Dx()
	return rgbRows(ctx, w, b.Dy(), func(row []byte, y int) {
		src := m.Pix[y*m.Stride : y*m.Stride+4*w]
		for x := 0; x < 4*w; x += 4 {
			nk := 255 - int(src[x+3])
			for c := 0; c < 3; c++ {
				row[x+c] = uint8(nk - mulDiv255(int(src[x+c]), nk))
			}
		}
	})
}

// mulDiv255 is PIL's MULDIV255: a·b/255 rounded as ((t>>8)+t)>>8, t=a·b+128.
func mulDiv255(a, b int) int {
	t := a*b + 128
	return ((t >> 8) + t) >> 8
}
