package imageproc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// forgedPNG is a PNG signature and IHDR chunk (valid CRC) claiming w×h RGB,
// followed by nothing.
func forgedPNG(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32([]byte("IHDR"), w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 2, 0, 0, 0)
	b.Write(binary.BigEndian.AppendUint32(nil, 13))
	b.Write(ihdr)
	b.Write(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(ihdr)))
	return b.Bytes()
}

// forgedJPEG is an SOI and a baseline SOF0 segment claiming w×h YCbCr 4:2:0.
func forgedJPEG(w, h uint16) []byte {
	b := []byte{0xff, 0xd8, 0xff, 0xc0, 0, 17, 8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 3}
	return append(b, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1)
}

// forgedGIF is a GIF header whose logical screen is w×h.
func forgedGIF(w, h uint16) []byte {
	b := []byte("GIF89a")
	b = binary.LittleEndian.AppendUint16(b, w)
	b = binary.LittleEndian.AppendUint16(b, h)
	return append(b, 0, 0, 0, 0x3b)
}

// forgedWebP is a VP8X WebP header with a w×h canvas.
func forgedWebP(w, h int) []byte {
	b := []byte("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00")
	b = append(b, byte(w-1), byte((w-1)>>8), byte((w-1)>>16), byte(h-1), byte((h-1)>>8), byte((h-1)>>16))
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)-8))
	return b
}

func TestForgedHugeHeadersRefusedWithoutAllocating(t *testing.T) {
	cases := []struct {
		name, msg string
		data      []byte
	}{
		{"png", "image is 65535×65535 = 4.3 GP, limit 40 MP", forgedPNG(65535, 65535)},
		{"jpeg", "image is 65535×65535 = 4.3 GP, limit 40 MP", forgedJPEG(65535, 65535)},
		{"gif", "image is 65535×65535 = 4.3 GP, limit 40 MP", forgedGIF(65535, 65535)},
		{"webp", "image is 16384×16384 = 268.4 MP, limit 40 MP", forgedWebP(16384, 16384)},
		{"png-wide", "image is 4000000×11 = 44 MP, limit 40 MP", forgedPNG(4_000_000, 11)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Decode(context.Background(), c.data, DefaultLimits())
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want ErrTooLarge with %q", err, c.msg)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("allocated %d bytes before refusing", n)
			}
		})
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLimitsAndBadInput(t *testing.T) {
	png := readTestdata(t, "rgba_wide.png")
	jpg := readTestdata(t, "progressive.jpg")
	anim := readTestdata(t, "anim.gif")
	webp := readTestdata(t, "lossy.webp")
	def := DefaultLimits()
	cases := []struct {
		name string
		data []byte
		lim  Limits
		want error
		msg  string
	}{
		{"empty", nil, def, ErrCorrupt, "empty input"},
		{"bytes over limit", png, Limits{MaxBytes: 100, MaxPixels: 1 << 20, MaxFrames: 1}, ErrTooLarge, "bytes, limit 100"},
		{"pixels over limit", png, Limits{MaxBytes: 1 << 20, MaxPixels: 97*61 - 1, MaxFrames: 1}, ErrTooLarge, "image is 97×61 = 5917 px, limit 5916 px"},
		{"frames over limit", anim, Limits{MaxBytes: 1 << 20, MaxPixels: 1 << 20, MaxFrames: 2}, ErrTooLarge, "more than 2 frames"},
		{"zero width png", forgedPNG(0, 10), def, ErrCorrupt, "png"},
		{"zero height jpeg", forgedJPEG(10, 0), def, ErrCorrupt, "0"},
		{"truncated png", png[:len(png)/2], def, ErrCorrupt, "decode png: "},
		{"truncated jpeg", jpg[:len(jpg)/2], def, ErrCorrupt, "decode jpeg"},
		{"truncated gif", anim[:200], def, ErrCorrupt, "decode gif"},
		{"truncated webp", webp[:len(webp)/2], def, ErrCorrupt, "decode webp"},
		{"header only png", forgedPNG(10, 10), def, ErrCorrupt, "decode png"},
		{"bmp", []byte("BM\x36\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00"), def, ErrUnsupportedFormat, "not JPEG, PNG, GIF or WebP"},
		{"tiff", []byte("II*\x00\x08\x00\x00\x00"), def, ErrUnsupportedFormat, "49 49 2a 00"},
		{"text", []byte("hello"), def, ErrUnsupportedFormat, "starts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := Decode(context.Background(), c.data, c.lim)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, c.want, c.msg)
			}
			if img != nil {
				t.Errorf("image %v returned with error", img.Bounds())
			}
			if _, err := Preprocess(context.Background(), c.data, 56, c.lim); !errors.Is(err, c.want) {
				t.Errorf("Preprocess err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestDefaultLimitsAcceptTestImages(t *testing.T) {
	lim := DefaultLimits()
	if lim.MaxBytes != 20<<20 || lim.MaxPixels != 40_000_000 || lim.MaxFrames != 100 {
		t.Fatalf("DefaultLimits() = %+v", lim)
	}
	// The first frame of an animation within the limit is what is used.
	img, err := Decode(context.Background(), readTestdata(t, "anim.gif"), Limits{MaxBytes: 1 << 20, MaxPixels: 97 * 61, MaxFrames: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds().Size(); got.X != 97 || got.Y != 61 {
		t.Errorf("size %v, want 97×61", got)
	}
}

func TestPreprocessRejectsBadSize(t *testing.T) {
	if _, err := Preprocess(context.Background(), readTestdata(t, "gray_small.png"), 0, DefaultLimits()); err == nil {
		t.Fatal("size 0 accepted")
	}
}

func TestPixelCount(t *testing.T) {
	for n, want := range map[int64]string{999: "999 px", 5917: "5917 px", 40_000_000: "40 MP", 4_294_836_225: "4.3 GP"} {
		if got := pixelCount(n); got != want {
			t.Errorf("pixelCount(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestPreprocessOnePixel covers a 1×1 image, which the reference cannot
// process (transformers takes a 1×1×3 array for channels-first): every
// output sample must be the pixel's colour.
func TestPreprocessOnePixel(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	img.Pix = []byte{200, 10, 99, 17}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	res, err := Preprocess(context.Background(), buf.Bytes(), 14, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(res.Square.Pix); i += 4 {
		if got := res.Square.Pix[i : i+4]; !bytes.Equal(got, []byte{200, 10, 99, 255}) {
			t.Fatalf("sample %d = %v", i/4, got)
		}
	}
	if res.Width != 1 || res.Height != 1 || res.Pixels[0] != normLUT[0][200] || res.Pixels[14*14] != normLUT[1][10] {
		t.Errorf("result %d×%d, pixels %g %g", res.Width, res.Height, res.Pixels[0], res.Pixels[14*14])
	}
}

func TestJPEGScanCapsRefuse(t *testing.T) {
	lim := Limits{MaxBytes: 1 << 20, MaxPixels: 512 * 512, MaxFrames: 1}
	blocks := int64(64 * 64)
	perScan := blocks * (63 + 16)
	fit := int((jpegWorkPerPixel*int64(lim.MaxPixels) - blocks*17) / perScan) // AC refinements the work cap admits
	cases := []struct {
		name string
		data []byte
		msg  string // "" for accepted
	}{
		{"scans at the cap", progressiveJPEG(64, 64, append([]jpegScan{{}}, repeatScans(scanACFirst, maxJPEGScans-1)...)), ""},
		{"one scan over the cap", progressiveJPEG(64, 64, append([]jpegScan{{}}, repeatScans(scanACFirst, maxJPEGScans)...)), "jpeg more than 100 scans"},
		{"work at the cap", progressiveJPEG(512, 512, append([]jpegScan{{}}, repeatScans(scanACRefine63, fit)...)), ""},
		{"work over the cap", progressiveJPEG(512, 512, append([]jpegScan{{}}, repeatScans(scanACRefine63, fit+1)...)),
			fmt.Sprintf("jpeg scans decode more than %d block coefficients", jpegWorkPerPixel*lim.MaxPixels)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errInspect := Inspect(c.data, lim)
			_, errDecode := jpegDecodeOnly(c.data, lim)
			for _, err := range []error{errInspect, errDecode} {
				if c.msg == "" {
					if err != nil {
						t.Fatal(err)
					}
					continue
				}
				if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), c.msg) {
					t.Fatalf("err = %v, want ErrTooLarge containing %q", err, c.msg)
				}
			}
		})
	}
}

// jpegDecodeOnly runs the JPEG decoder itself, which must refuse what
// Inspect refuses even when called without it.
func jpegDecodeOnly(data []byte, lim Limits) (image.Image, error) {
	h, err := inspect(data, Limits{MaxBytes: lim.MaxBytes, MaxPixels: lim.MaxPixels, MaxFrames: lim.MaxFrames})
	if err != nil && !errors.Is(err, ErrTooLarge) {
		return nil, err
	}
	h.f = formatJPEG
	h.jpegLim.MaxScans, h.jpegLim.MaxWork = maxJPEGScans, jpegWorkPerPixel*int64(lim.MaxPixels)
	return decodeImage(context.Background(), h, data)
}

// TestPreprocessBytesBoundsAllocation checks Header.PreprocessBytes against
// what Preprocess really allocates, on every drawn image and on small
// versions of the worst cases (thin images, scan bomb, 16-bit, interlaced,
// many frames, lossless WebP).
func TestPreprocessBytesBoundsAllocation(t *testing.T) {
	inputs := map[string][]byte{
		"png 1×200000":    thinPNG(t, 1, 200_000),
		"png 200000×1":    thinPNG(t, 200_000, 1),
		"png 3×70000":     thinPNG(t, 3, 70_000),
		"jpeg scan bomb":  scanBombJPEG(800, 600, 800*600, scanACRefine63, 0),
		"png 16-bit":      png16(t, 300, 200),
		"png interlaced":  interlacedPNG(t, 301, 203),
		"gif 100 frames":  manyFramesGIF(t, 300, 200, 100),
		"webp lossless":   losslessWebP(1000, 700),
		"jpeg baseline":   baselineJPEG(t, 640, 480),
		"jpeg upscaled":   baselineJPEG(t, 20, 30),
		"png same size":   thinPNG(t, 56, 20),
		"png single size": thinPNG(t, 1, 56),
	}
	files, err := filepath.Glob("testdata/*.*")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range files {
		inputs[p] = readTestdata(t, filepath.Base(p))
	}
	for name, data := range inputs {
		h, err := Inspect(data, DefaultLimits())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, size := range []int{56, 336} {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if _, err := Preprocess(context.Background(), data, size, DefaultLimits()); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			runtime.ReadMemStats(&after)
			got, bound := int64(after.TotalAlloc-before.TotalAlloc), h.PreprocessBytes(size)
			if got > bound {
				t.Errorf("%s at %d: allocated %d bytes, PreprocessBytes %d", name, size, got, bound)
			}
		}
	}
}

func TestInspectReportsHeader(t *testing.T) {
	for _, c := range []struct {
		file, format string
		w, h         int
	}{
		{"progressive.jpg", "jpeg", 95, 59}, {"rgba_wide.png", "png", 97, 61}, {"anim.gif", "gif", 97, 61}, {"lossy.webp", "webp", 61, 97},
	} {
		data := readTestdata(t, c.file)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		h, err := Inspect(data, DefaultLimits())
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if h.Format != c.format || h.Width != c.w || h.Height != c.h || h.DecodeBytes < 4*int64(c.w*c.h) {
			t.Errorf("%s: %+v, want %s %d×%d", c.file, h, c.format, c.w, c.h)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Errorf("%s: Inspect allocated %d bytes", c.file, n)
		}
	}
	// Inspect refuses what Decode refuses, with the same error.
	for _, data := range [][]byte{forgedPNG(65535, 65535), readTestdata(t, "anim.gif")} {
		lim := Limits{MaxBytes: 1 << 20, MaxPixels: 1 << 20, MaxFrames: 2}
		_, errI := Inspect(data, lim)
		_, errD := Decode(context.Background(), data, lim)
		if errI == nil || errD == nil || errI.Error() != errD.Error() {
			t.Errorf("Inspect err %v, Decode err %v", errI, errD)
		}
	}
}
