package imageproc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/pancap-serve/pancap/internal/golden"
)

// goldenCase is one entry of testdata/golden/manifest.json, written by
// tools/reference/imageproc_golden.py (run it from the repository root with
// .venv/bin/python to regenerate the images under testdata/ and the goldens).
type goldenCase struct {
	Name          string `json:"name"`
	Kind          string `json:"kind"` // "exact" or "jpeg"
	Width, Height int
	Mode          string `json:"mode"`
	Source        string `json:"source"` // drawn image under testdata/
	Photo         string `json:"photo"`  // real photo under testdata/images
	Sizes         []int  `json:"sizes"`
}

const goldenDir = "testdata/golden"

// photoDir is the repository's photo folder, relative to this package.
var photoDir = filepath.Join("..", "..", "testdata", "images")

func loadManifest(t testing.TB) []goldenCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 15 {
		t.Fatalf("manifest has %d cases", len(cases))
	}
	return cases
}

// source returns the encoded bytes of a case.
func (c goldenCase) source(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join("testdata", c.Source)
	if c.Photo != "" {
		path = filepath.Join(photoDir, c.Photo)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readPNG reads a golden RGB PNG as RGBA.
func readPNG(t testing.TB, path string) *image.RGBA {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rgb, err := toRGB(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return rgb
}

// rgbDiff compares the RGB samples of two equally sized images: the number
// of samples that differ, how many differ by exactly one, and the largest
// difference.
type rgbDiff struct{ total, diff, offByOne, maxDiff int }

func compareRGB(t testing.TB, got, want *image.RGBA) rgbDiff {
	t.Helper()
	if got.Rect.Size() != want.Rect.Size() {
		t.Fatalf("size %v, want %v", got.Rect.Size(), want.Rect.Size())
	}
	var d rgbDiff
	w, h := want.Rect.Dx(), want.Rect.Dy()
	for y := range h {
		g := got.Pix[got.PixOffset(got.Rect.Min.X, got.Rect.Min.Y+y):]
		e := want.Pix[want.PixOffset(want.Rect.Min.X, want.Rect.Min.Y+y):]
		for x := range w {
			for c := range 3 {
				d.total++
				v := int(g[4*x+c]) - int(e[4*x+c])
				if v < 0 {
					v = -v
				}
				if v != 0 {
					d.diff++
					if v == 1 {
						d.offByOne++
					}
					d.maxDiff = max(d.maxDiff, v)
				}
			}
		}
	}
	return d
}

func (d rgbDiff) String() string {
	return fmt.Sprintf("%d of %d samples differ (%.4f%%), %d by one, max %d",
		d.diff, d.total, 100*float64(d.diff)/float64(d.total), d.offByOne, d.maxDiff)
}

// check applies the tolerance: identical for exact cases; for JPEG
// at most 0.1% of the samples off, each by one (resized images only; the
// full-size decode is reported, not judged).
func (d rgbDiff) check(t *testing.T, kind, what string, judge bool) {
	t.Helper()
	t.Logf("%s: %v", what, d)
	switch {
	case kind == "exact" && d.diff != 0:
		t.Errorf("%s: %v, want identical", what, d)
	case kind == "jpeg" && judge && (d.maxDiff > 1 || d.diff*1000 > d.total):
		t.Errorf("%s: %v, want ≤ 0.1%% off by one", what, d)
	}
}

func TestGoldenDecode(t *testing.T) {
	for _, c := range loadManifest(t) {
		if c.Source == "" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			img, err := decodeRGB(context.Background(), c.source(t), DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			compareRGB(t, img, readPNG(t, filepath.Join(goldenDir, c.Name+".rgb.png"))).check(t, c.Kind, "decode", false)
		})
	}
}

func TestGoldenPreprocess(t *testing.T) {
	for _, c := range loadManifest(t) {
		t.Run(c.Name, func(t *testing.T) {
			data := c.source(t)
			for _, size := range c.Sizes {
				if testing.Short() && c.Photo != "" && size > 56 {
					continue // the full-size photo cases dominate the run time
				}
				res, err := Preprocess(context.Background(), data, size, DefaultLimits())
				if err != nil {
					t.Fatal(err)
				}
				if res.Width != c.Width || res.Height != c.Height {
					t.Errorf("size %d×%d, want %d×%d", res.Width, res.Height, c.Width, c.Height)
				}
				want := readPNG(t, filepath.Join(goldenDir, fmt.Sprintf("%s.%d.png", c.Name, size)))
				compareRGB(t, res.Square, want).check(t, c.Kind, fmt.Sprintf("resized %d", size), true)
				if size != 56 {
					continue
				}
				pv := golden.ReadF32(t, filepath.Join(goldenDir, c.Name+".56.f32.gz"))
				comparePixels(t, res, want, pv)
			}
		})
	}
}

// comparePixels checks pixel_values within 1e-6 wherever the 8-bit samples
// the two come from agree.
func comparePixels(t *testing.T, res Result, want *image.RGBA, pv []float32) {
	t.Helper()
	if len(res.Pixels) != len(pv) {
		t.Fatalf("%d pixel values, want %d", len(res.Pixels), len(pv))
	}
	s := want.Rect.Dx()
	for i, v := range pv {
		c, y, x := i/(s*s), i/s%s, i%s
		if res.Square.Pix[res.Square.PixOffset(x, y)+c] != want.Pix[want.PixOffset(x, y)+c] {
			continue
		}
		if math.Abs(float64(res.Pixels[i]-v)) > 1e-6 {
			t.Fatalf("pixel value %d (c%d y%d x%d) = %g, want %g", i, c, y, x, res.Pixels[i], v)
		}
	}
}

func TestGoldenNormalize(t *testing.T) {
	img := readPNG(t, filepath.Join(goldenDir, "normalize.png"))
	want := golden.ReadF32(t, filepath.Join(goldenDir, "normalize.f32"))
	got := normalize(img)
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("value %d = %g, want %g (bit-exact)", i, got[i], want[i])
		}
	}
}
