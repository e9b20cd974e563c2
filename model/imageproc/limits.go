// Package imageproc turns encoded image bytes into the pixel tensor the LLaVA
// vision tower reads, reproducing the reference pipeline bit for bit:
// PIL 9.4's Image.open(...).convert("RGB"), LLaVA's expand2square with the
// CLIP mean colour, and transformers 4.37.2's CLIPImageProcessor (PIL bicubic
// resize of the shortest side, centre crop, rescale by 1/255, normalise).
//
// Decoding is guarded by Limits that are checked on the header alone, before
// any pixel memory is allocated. JPEG goes through internal/jpeg, a fork of
// Go's decoder with libjpeg-turbo's ISLOW IDCT, followed by libjpeg-turbo's
// fancy chroma upsampling and colour tables; WebP goes through
// internal/webp, a fork of x/image's webp, vp8 and vp8l that checks a
// context, and lossy WebP chroma is upsampled and converted as libwebp does.
// Decoded pixels thus equal PIL's, not Go's defaults: on every golden file,
// JPEG photos included, the 8-bit images are identical to the reference.
//
// Golden files come from tools/reference/imageproc_golden.py.
package imageproc

import (
	"cmp"
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, with the detail after a colon.
var (
	// ErrUnsupportedFormat: the bytes are not JPEG, PNG, GIF or WebP.
	ErrUnsupportedFormat = errors.New("unsupported image format")
	// ErrTooLarge: the encoded size, pixel count or frame count exceeds Limits.
	ErrTooLarge = errors.New("image too large")
	// ErrCorrupt: the bytes claim a supported format but cannot be decoded.
	ErrCorrupt = errors.New("corrupt image")
)

// Limits bound the work and memory one image may cost. They are checked
// before decoding: bytes on the input, pixels and frames on the header.
// A zero field refuses every image; start from DefaultLimits.
type Limits struct {
	MaxBytes  int // largest accepted encoded input, in bytes
	MaxPixels int // largest accepted width×height
	MaxFrames int // most frames an animated GIF may hold (only the first is used)
}

// DefaultLimits returns the limits the server uses unless configured:
// 20 MiB of encoded bytes, 40 megapixels, 100 frames.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 20 << 20, MaxPixels: 40_000_000, MaxFrames: 100}
}

// WithDefaults returns l with its zero fields taken from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	l.MaxBytes = cmp.Or(l.MaxBytes, d.MaxBytes)
	l.MaxPixels = cmp.Or(l.MaxPixels, d.MaxPixels)
	l.MaxFrames = cmp.Or(l.MaxFrames, d.MaxFrames)
	return l
}

// checkBytes refuses empty or oversized input.
func (l Limits) checkBytes(n int) error {
	if n == 0 {
		return fmt.Errorf("%w: empty input", ErrCorrupt)
	}
	if n > l.MaxBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, l.MaxBytes)
	}
	return nil
}

// checkSize refuses zero-sized or oversized images given their header size.
func (l Limits) checkSize(w, h int) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("%w: image is %d×%d", ErrCorrupt, w, h)
	}
	if px := int64(w) * int64(h); px > int64(l.MaxPixels) {
		return fmt.Errorf("%w: image is %d×%d = %s, limit %s",
			ErrTooLarge, w, h, pixelCount(px), pixelCount(int64(l.MaxPixels)))
	}
	return nil
}

// pixelCount formats a pixel count: "4.3 GP", "40 MP", or exact below a
// megapixel ("5917 px"), where rounding would hide the difference.
func pixelCount(n int64) string {
	switch {
	case n >= 1e9:
		return trimZero(float64(n)/1e9) + " GP"
	case n >= 1e6:
		return trimZero(float64(n)/1e6) + " MP"
	}
	return fmt.Sprintf("%d px", n)
}

// trimZero prints v with one decimal, dropping a trailing ".0".
func trimZero(v float64) string {
	s := fmt.Sprintf("%.1f", v)
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		return s[:len(s)-2]
	}
	return s
}
