package imageproc

import (
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"testing"
)

// fuzzLimits keep every fuzz input cheap: 64 KiB, 256×256 pixels, 4 frames.
var fuzzLimits = Limits{MaxBytes: 64 << 10, MaxPixels: 256 * 256, MaxFrames: 4}

// addSeeds adds the small drawn images and the forged headers to the corpus
// (testdata/fuzz/<target> holds more, in the go-fuzz format).
func addSeeds(f *testing.F) {
	f.Helper()
	files, err := filepath.Glob("testdata/*.*")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) <= fuzzLimits.MaxBytes {
			f.Add(b)
		}
	}
	f.Add(forgedPNG(65535, 65535))
	f.Add(forgedJPEG(300, 300))
	f.Add(forgedGIF(16, 16))
	f.Add(forgedWebP(64, 64))
}

// checkErr fails unless err wraps exactly one of the sentinels.
func checkErr(t *testing.T, err error) {
	t.Helper()
	n := 0
	for _, s := range []error{ErrUnsupportedFormat, ErrTooLarge, ErrCorrupt} {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %q wraps %d sentinels, want 1", err, n)
	}
}

func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Decode(context.Background(), data, fuzzLimits)
		if err != nil {
			checkErr(t, err)
			return
		}
		m, ok := img.(*image.RGBA)
		if !ok {
			t.Fatalf("Decode returned %T", img)
		}
		b := m.Bounds()
		if b.Min != (image.Point{}) || b.Empty() || b.Dx()*b.Dy() > fuzzLimits.MaxPixels {
			t.Fatalf("bounds %v", b)
		}
		for i := 3; i < len(m.Pix); i += 4 {
			if m.Pix[i] != 0xff {
				t.Fatalf("alpha %d at byte %d", m.Pix[i], i)
			}
		}
	})
}

func FuzzPreprocess(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		const size = 14
		res, err := Preprocess(context.Background(), data, size, fuzzLimits)
		if err != nil {
			checkErr(t, err)
			return
		}
		if len(res.Pixels) != 3*size*size || res.Square.Bounds().Size() != image.Pt(size, size) {
			t.Fatalf("%d pixel values, square %v", len(res.Pixels), res.Square.Bounds())
		}
		if res.Width <= 0 || res.Height <= 0 {
			t.Fatalf("size %d×%d", res.Width, res.Height)
		}
		for i, v := range res.Pixels {
			if v < -2 || v > 3 { // (0-mean)/std ≥ -1.8, (1-mean)/std ≤ 2.2
				t.Fatalf("pixel value %d = %g", i, v)
			}
		}
	})
}
