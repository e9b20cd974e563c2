package benchmarks

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// samePixels decodes both streams and compares them pixel by pixel.
func samePixels(t *testing.T, a, b []byte) {
	t.Helper()
	ma, fa, err := image.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	mb, fb, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if fa != fb || ma.Bounds() != mb.Bounds() {
		t.Fatalf("%s %v vs %s %v", fa, ma.Bounds(), fb, mb.Bounds())
	}
	for y := ma.Bounds().Min.Y; y < ma.Bounds().Max.Y; y++ {
		for x := ma.Bounds().Min.X; x < ma.Bounds().Max.X; x++ {
			if ma.At(x, y) != mb.At(x, y) {
				t.Fatalf("pixel %d,%d differs", x, y)
			}
		}
	}
}

func TestTaggedKeepsPixels(t *testing.T) {
	imgs, err := Synthetic([][2]int{{33, 17}}, 5)
	if err != nil {
		t.Fatal(err)
	}
	var pngBuf bytes.Buffer
	m, _, _ := image.Decode(bytes.NewReader(imgs[0].Data))
	if err := png.Encode(&pngBuf, m); err != nil {
		t.Fatal(err)
	}
	inputs := [][]byte{imgs[0].Data, pngBuf.Bytes()}
	photo, err := os.ReadFile("../testdata/images/waterview.jpg")
	if err != nil {
		t.Fatal(err)
	}
	inputs = append(inputs, photo) // a progressive JPEG
	for _, in := range inputs {
		a, err := Tagged(in, "a")
		if err != nil {
			t.Fatal(err)
		}
		b, err := Tagged(in, "b")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a, b) || bytes.Equal(a, in) {
			t.Fatal("tags do not change the bytes")
		}
		samePixels(t, in, a)
	}
	if _, err := Tagged([]byte("GIF89a"), "x"); !errors.Is(err, ErrImage) {
		t.Fatalf("gif: %v", err)
	}
}

func TestSyntheticImages(t *testing.T) {
	a, err := Synthetic([][2]int{{20, 10}, {7, 9}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Synthetic([][2]int{{20, 10}, {7, 9}}, 1)
	c, _ := Synthetic([][2]int{{20, 10}, {7, 9}}, 2)
	if len(a) != 2 || a[1].W != 7 || a[1].H != 9 || !bytes.Equal(a[0].Data, b[0].Data) || bytes.Equal(a[0].Data, c[0].Data) {
		t.Fatal("synthetic images are not seeded")
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(a[0].Data))
	if err != nil || format != "jpeg" || cfg.Width != 20 || cfg.Height != 10 {
		t.Fatal(cfg, format, err)
	}
	if s, err := ParseSizes("640x480, 8X8"); err != nil || len(s) != 2 || s[0] != [2]int{640, 480} || s[1] != [2]int{8, 8} {
		t.Fatal(s, err)
	}
	for _, in := range []string{"", "640", "0x5", "5x-1", "9000x10", "axb"} {
		if _, err := ParseSizes(in); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestLoadImages(t *testing.T) {
	dir := t.TempDir()
	m := image.NewPaletted(image.Rect(0, 0, 6, 4), []color.Color{color.Black, color.White})
	var g bytes.Buffer
	if err := gif.Encode(&g, m, nil); err != nil {
		t.Fatal(err)
	}
	syn, _ := Synthetic([][2]int{{5, 5}}, 1)
	for name, data := range map[string][]byte{"b.gif": g.Bytes(), "a.jpg": syn[0].Data, "notes.txt": []byte("skip me")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	imgs, err := LoadImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].Name != "a.jpg" || imgs[1].Name != "b.gif" || imgs[1].W != 6 {
		t.Fatalf("%+v", imgs)
	}
	if _, err := Tagged(imgs[1].Data, "x"); err != nil {
		t.Fatalf("the GIF was not re-encoded as PNG: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c.png"), []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadImages(dir); !errors.Is(err, ErrImage) {
		t.Fatalf("broken file: %v", err)
	}
	if _, err := LoadImages(t.TempDir()); !errors.Is(err, ErrImage) {
		t.Fatalf("empty folder: %v", err)
	}
}
