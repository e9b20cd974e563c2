package imageproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"io"
	"strings"

	"github.com/pancap-serve/pancap/model/imageproc/internal/jpeg"
	"github.com/pancap-serve/pancap/model/imageproc/internal/webp"
)

// maxJPEGScans caps the scans (SOS segments) of one JPEG. libjpeg's and
// mozjpeg's progressive scripts use about 10 scans, jpegtran's custom scripts
// and jpegrescan's searches rarely 20; nvImageCodec refuses more than 256
// (its answer to the same scan bomb, cure53's LJT-01-004 on libjpeg-turbo,
// whose djpeg has -maxscans for it). 100 is far above any encoder's output;
// what the scans may cost together is bounded by jpegWorkPerPixel.
const maxJPEGScans = 100

// jpegWorkPerPixel is the block-coefficient work (jpeg.Info.Work: blocks
// visited × (coefficients of the band + jpeg.BlockOverhead), summed over the
// scans) a JPEG may cost per pixel of Limits.MaxPixels. A baseline 4:2:0
// image costs (64+16)·6/256 ≈ 1.9 per pixel, 4:4:4 3.75; libjpeg's default
// progressive script for 4:4:4 costs (447 + 14·16)/64 ≈ 10.5, scripts with
// twice its scans about 14. At 24, the costliest scan bomb DefaultLimits
// admit (8000×5000, refinement scans over the full band) decodes and
// preprocesses in about the CPU time of a plain 40 MP baseline JPEG (see
// TestWorstCaseCost).
const jpegWorkPerPixel = 24

// vp8lTreeBytes bounds the prefix-code trees of a lossless WebP: x/image's
// decoder accepts at most 2600 groups (libwebp's MAX_HUFF_IMAGE_SIZE) of five
// trees, whose nodes (8 bytes) number at most twice the alphabets: green
// 256+24+2048 (the largest colour cache), red, blue and alpha 256, distance 40.
const vp8lTreeBytes = 2600 * 2 * (256 + 24 + 2048 + 3*256 + 40) * 8

// decodeSlack covers what a decode allocates besides its pixel buffers:
// decoder state, Huffman and LZW tables, bufio and zlib buffers.
const decodeSlack = 4 << 20

// Header is what Inspect learns about an image from its headers, without
// decoding pixels.
type Header struct {
	Format        string // "jpeg", "png", "gif" or "webp"
	Width, Height int    // size in pixels (a GIF's logical screen)
	// DecodeBytes bounds the bytes Decode allocates for this image: the
	// decoder's buffers (16-bit, CMYK, palette and coefficient
	// intermediates included) and the RGBA copy it returns.
	DecodeBytes int64
}

// PreprocessBytes bounds the bytes Preprocess allocates for this image at
// the given output size: DecodeBytes plus the resize buffers and the result
// (the size×size tensor and square).
func (h Header) PreprocessBytes(size int) int64 {
	return h.DecodeBytes + resizeBytes(h.Width, h.Height, size) + resultBytes(size)
}

// header is Header plus what decoding needs from the headers.
type header struct {
	Header
	f       format
	gray16  bool        // a 16-bit greyscale PNG (PIL's mode "I")
	gifHead gifHeader   // GIF only
	jpegLim jpeg.Limits // JPEG only: the decoder's share of Limits
}

// Inspect reads the headers of a JPEG, PNG, GIF or WebP image and applies
// every check of Limits that Decode applies (bytes, pixels, frames, JPEG
// scans and scan work), without allocating pixel memory: an image Inspect
// accepts is refused by Decode only if its data turns out corrupt.
// For a JPEG it walks every marker segment; for a GIF every block.
func Inspect(data []byte, lim Limits) (Header, error) {
	h, err := inspect(data, lim)
	return h.Header, err
}

// inspect is Inspect's single implementation, which decoding starts with.
func inspect(data []byte, lim Limits) (header, error) {
	var h header
	if err := lim.checkBytes(len(data)); err != nil {
		return h, err
	}
	h.f = sniff(data)
	h.Format = h.f.String()
	var (
		cfg image.Config
		err error
	)
	switch h.f {
	case formatJPEG:
		var info jpeg.Info
		h.jpegLim = jpeg.Limits{MaxScans: maxJPEGScans, MaxWork: jpegWorkPerPixel * int64(lim.MaxPixels)}
		info, err = jpeg.Inspect(bytes.NewReader(data), h.jpegLim)
		cfg.Width, cfg.Height = info.Width, info.Height
		h.DecodeBytes = info.Bytes
		if info.Components != 0 && err != nil {
			if sizeErr := lim.checkSize(cfg.Width, cfg.Height); sizeErr != nil {
				return h, sizeErr // the frame header's verdict comes first
			}
		}
	case formatPNG:
		cfg, err = png.DecodeConfig(bytes.NewReader(data))
	case formatGIF:
		cfg, err = gif.DecodeConfig(bytes.NewReader(data))
	case formatWebP:
		cfg, err = webp.DecodeConfig(bytes.NewReader(data))
	default:
		return h, fmt.Errorf("%w: not JPEG, PNG, GIF or WebP (starts % x)", ErrUnsupportedFormat, data[:min(len(data), 4)])
	}
	if err != nil {
		return h, decodeError(h.f, err)
	}
	if err := lim.checkSize(cfg.Width, cfg.Height); err != nil {
		return h, err
	}
	h.Width, h.Height = cfg.Width, cfg.Height
	px := int64(cfg.Width) * int64(cfg.Height)
	switch h.f {
	case formatPNG:
		h.gray16 = cfg.ColorModel == color.Gray16Model
		h.DecodeBytes = pngBytes(data, cfg.Width, cfg.Height)
	case formatGIF:
		if h.gifHead, err = scanGIF(data, lim.MaxFrames); err != nil {
			return h, err
		}
		h.DecodeBytes = px // the first frame's indices (within the screen)
	case formatWebP:
		// Lossy: the 4:2:0 planes padded to whole macroblocks, an alpha
		// plane and the lossless image it is decoded from; lossless: the
		// NRGBA image, one more for a colour-indexing transform and the
		// transforms' subsampled images (each at most 1/16 of it). A
		// lossless image (or alpha plane) may also hold up to vp8lTreeBytes
		// of prefix codes.
		mbs := int64((cfg.Width+15)/16) * int64((cfg.Height+15)/16)
		h.DecodeBytes = max(384*mbs+5*px, 9*px)
		if cfg.ColorModel != color.YCbCrModel {
			h.DecodeBytes += vp8lTreeBytes
		}
	}
	h.DecodeBytes += 4*px + decodeSlack // the RGBA copy
	return h, nil
}

// pngBytes bounds what Go's PNG decoder allocates for a w×h PNG whose IHDR
// png.DecodeConfig has validated: the image at 4 bytes per pixel (8 at
// 16 bits), twice that when interlaced (the passes, then the image), and
// two rows of filtered bytes.
func pngBytes(data []byte, w, h int) int64 {
	const ihdrDepth, ihdrInterlace = 24, 28 // offsets in the file
	depth, interlaced := data[ihdrDepth], data[ihdrInterlace] != 0
	perPixel := int64(4)
	if depth == 16 {
		perPixel = 8
	}
	n := perPixel * int64(w) * int64(h)
	if interlaced {
		n *= 2
	}
	return n + 2*(perPixel*int64(w)+1)
}

// decodeError wraps a decoder error: truncation and malformed data are
// ErrCorrupt; features the Go decoders lack are ErrUnsupportedFormat; the
// JPEG decoder's limits are ErrTooLarge.
func decodeError(f format, err error) error {
	var (
		jpegUnsupported jpeg.UnsupportedError
		jpegLimit       jpeg.LimitError
		pngUnsupported  png.UnsupportedError
	)
	// The Go decoders prefix their messages with the format name.
	msg := strings.TrimPrefix(err.Error(), f.String()+": ")
	switch {
	case errors.As(err, &jpegLimit):
		return fmt.Errorf("%w: jpeg %s", ErrTooLarge, msg)
	case errors.As(err, &jpegUnsupported), errors.As(err, &pngUnsupported):
		return fmt.Errorf("%w: decode %v: %s", ErrUnsupportedFormat, f, msg)
	case errors.Is(err, io.EOF):
		msg = io.ErrUnexpectedEOF.Error()
	}
	return fmt.Errorf("%w: decode %v: %s", ErrCorrupt, f, msg)
}

// canceled wraps ctx's error for return once ctx is done.
func canceled(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("imageproc: %w", err)
	}
	return nil
}

// ctxReader is an io.Reader that fails with ctx's error once ctx is done,
// so that a decoder reading from it stops within one Read's worth of work.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
