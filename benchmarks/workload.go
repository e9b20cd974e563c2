package benchmarks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	_ "image/gif" // decoders for --images folders
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	_ "golang.org/x/image/webp" // decoder for --images folders
)

// ErrImage is wrapped by errors about workload images.
var ErrImage = errors.New("bad workload image")

// Image is one base image of a workload, encoded as JPEG or PNG.
type Image struct {
	Name string `json:"name"`
	W    int    `json:"width"`
	H    int    `json:"height"`
	Data []byte `json:"-"`
}

// imageExts are the file types LoadImages reads.
var imageExts = []string{".jpg", ".jpeg", ".png", ".gif", ".webp"}

// LoadImages reads every image of dir (JPEG, PNG, GIF, WebP; sorted by
// name). GIF and WebP files are re-encoded as PNG, so every request can be
// made unique with Tagged.
func LoadImages(dir string) ([]Image, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	var out []Image
	for _, e := range entries {
		if e.IsDir() || !slices.Contains(imageExts, strings.ToLower(filepath.Ext(e.Name()))) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrImage, err)
		}
		img, err := newImage(e.Name(), data)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no JPEG, PNG, GIF or WebP file in %s", ErrImage, dir)
	}
	return out, nil
}

// newImage checks data and re-encodes it as PNG unless it is JPEG or PNG.
func newImage(name string, data []byte) (Image, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return Image{}, fmt.Errorf("%w: %s: %w", ErrImage, name, err)
	}
	if format != "jpeg" && format != "png" {
		m, _, err := image.Decode(bytes.NewReader(data))
		if err != nil {
			return Image{}, fmt.Errorf("%w: %s: %w", ErrImage, name, err)
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, m); err != nil {
			return Image{}, fmt.Errorf("%w: %s: %w", ErrImage, name, err)
		}
		data = buf.Bytes()
	}
	return Image{Name: name, W: cfg.Width, H: cfg.Height, Data: data}, nil
}

// ParseSizes reads "WxH,WxH,…" (e.g. "640x480,1000x667").
func ParseSizes(s string) ([][2]int, error) {
	var out [][2]int
	for f := range strings.SplitSeq(s, ",") {
		ws, hs, ok := strings.Cut(strings.ToLower(strings.TrimSpace(f)), "x")
		w, err1 := strconv.Atoi(ws)
		h, err2 := strconv.Atoi(hs)
		if !ok || err1 != nil || err2 != nil || w < 1 || h < 1 || w > 8192 || h > 8192 {
			return nil, fmt.Errorf("%w: synthetic sizes %q: want WxH,… with sides in [1, 8192]", ErrConfig, s)
		}
		out = append(out, [2]int{w, h})
	}
	return out, nil
}

// Synthetic draws one JPEG image per size: a colour gradient with seeded
// random rectangles, so the vision encoder sees structure and every size
// gets distinct content.
func Synthetic(sizes [][2]int, seed uint64) ([]Image, error) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]Image, len(sizes))
	for i, sz := range sizes {
		w, h := sz[0], sz[1]
		m := image.NewRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				m.SetRGBA(x, y, color.RGBA{uint8(255 * x / w), uint8(255 * y / h), uint8(128 + i*37), 255})
			}
		}
		for range 12 {
			c := color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}
			x0, y0 := rng.IntN(w), rng.IntN(h)
			x1, y1 := min(w, x0+1+rng.IntN(max(1, w/3))), min(h, y0+1+rng.IntN(max(1, h/3)))
			for y := y0; y < y1; y++ {
				for x := x0; x < x1; x++ {
					m.SetRGBA(x, y, c)
				}
			}
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 90}); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrImage, err)
		}
		out[i] = Image{Name: fmt.Sprintf("synthetic-%dx%d", w, h), W: w, H: h, Data: buf.Bytes()}
	}
	return out, nil
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// Tagged returns a copy of the JPEG or PNG data with tag stored as a comment
// (a JPEG COM segment after SOI, a PNG tEXt chunk after IHDR): the pixels
// are unchanged but the bytes differ, so the server's image and prefix
// caches see a new image. tag must be shorter than 60000 bytes.
func Tagged(data []byte, tag string) ([]byte, error) {
	if len(tag) >= 60000 {
		return nil, fmt.Errorf("%w: tag of %d bytes", ErrImage, len(tag))
	}
	switch {
	case len(data) >= 4 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF:
		out := make([]byte, 0, len(data)+4+len(tag))
		out = append(out, 0xFF, 0xD8, 0xFF, 0xFE)
		out = binary.BigEndian.AppendUint16(out, uint16(2+len(tag)))
		out = append(out, tag...)
		return append(out, data[2:]...), nil
	case bytes.HasPrefix(data, pngSignature) && len(data) >= 33 && string(data[12:16]) == "IHDR" &&
		binary.BigEndian.Uint32(data[8:12]) == 13:
		const ihdrEnd = 8 + 4 + 4 + 13 + 4
		payload := append([]byte("Comment\x00"), tag...)
		chunk := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
		chunk = append(chunk, "tEXt"...)
		chunk = append(chunk, payload...)
		chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
		out := make([]byte, 0, len(data)+len(chunk))
		out = append(out, data[:ihdrEnd]...)
		out = append(out, chunk...)
		return append(out, data[ihdrEnd:]...), nil
	}
	return nil, fmt.Errorf("%w: not a JPEG or PNG stream", ErrImage)
}
