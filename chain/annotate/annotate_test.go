package annotate

import (
	"image"
	"image/color"
	_ "image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/pancap-serve/pancap/chain"
)

var grey = color.RGBA{90, 90, 90, 255}

// canvas is a uniform grey w×h image with a non-zero origin, to check that
// Draw handles image bounds.
func canvas(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(10, 20, 10+w, 20+h))
	for y := img.Rect.Min.Y; y < img.Rect.Max.Y; y++ {
		for x := img.Rect.Min.X; x < img.Rect.Max.X; x++ {
			img.SetRGBA(x, y, grey)
		}
	}
	return img
}

func changed(img *image.RGBA, x, y int) bool { return img.RGBAAt(x, y) != grey }

func TestDraw(t *testing.T) {
	src := canvas(300, 200)
	ents := []chain.Entity{
		{Tag: "dog", Pixel: chain.PixelBox{40, 60, 200, 180}},
		{Tag: "", Pixel: chain.PixelBox{220, 100, 280, 160}},
		{Tag: "sky", Pixel: chain.PixelBox{0, 0, 300, 40}}, // touches the top
	}
	out := Draw(src, ents)
	if out.Bounds() != image.Rect(0, 0, 300, 200) {
		t.Fatalf("bounds %v", out.Bounds())
	}
	// dog: border pixels change, 3 px deep, the inside stays.
	for _, p := range []image.Point{{40, 120}, {42, 120}, {199, 120}, {100, 60}, {100, 179}} {
		if !changed(out, p.X, p.Y) {
			t.Errorf("border pixel %v unchanged", p)
		}
	}
	for _, p := range []image.Point{{43, 120}, {120, 120}, {196, 120}, {100, 63}, {100, 176}} {
		if changed(out, p.X, p.Y) {
			t.Errorf("inside pixel %v changed", p)
		}
	}
	// dog's label sits above its box: a filled band right above the top edge.
	if !changed(out, 41, 58) || !changed(out, 41, 60-16) {
		t.Error("no label above the dog's box")
	}
	// the untagged box is drawn but has no label.
	if !changed(out, 220, 130) || !changed(out, 250, 100) {
		t.Error("untagged box not drawn")
	}
	if changed(out, 222, 95) {
		t.Error("untagged box got a label")
	}
	// sky's label goes inside its box, below the top edge.
	if !changed(out, 5, 10) {
		t.Error("no label inside the sky box")
	}
	// different tags get different colours.
	if out.RGBAAt(40, 120) == out.RGBAAt(220, 130) {
		t.Error("two tags share a colour")
	}
	// the source is untouched.
	if src.RGBAAt(50, 80) != grey {
		t.Error("Draw modified its input")
	}
}

func TestDrawClipsAndSkipsEmpty(t *testing.T) {
	out := Draw(canvas(50, 50), []chain.Entity{
		{Tag: "big", Pixel: chain.PixelBox{-20, -20, 500, 500}},
		{Tag: "nothing", Pixel: chain.PixelBox{30, 30, 30, 40}},
	})
	if !changed(out, 0, 25) || !changed(out, 49, 25) {
		t.Error("clipped box not drawn on the image edges")
	}
	if changed(out, 30, 35) || changed(out, 30, 28) {
		t.Error("an empty box or its label was drawn")
	}
}

func TestPrintable(t *testing.T) {
	if got := printable("café\tsign"); got != "caf??sign" {
		t.Errorf("printable = %q", got)
	}
}

func TestWritePNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.png")
	ents := []chain.Entity{{Tag: "x", Pixel: chain.PixelBox{5, 25, 40, 45}}}
	if err := WritePNG(path, canvas(60, 50), ents); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 60 || img.Bounds().Dy() != 50 {
		t.Errorf("PNG is %v", img.Bounds())
	}
	if r, g, b, _ := img.At(5, 35).RGBA(); r>>8 == 90 && g>>8 == 90 && b>>8 == 90 {
		t.Error("box border missing in the PNG")
	}
	if err := WritePNG(filepath.Join(t.TempDir(), "no", "such", "dir.png"), canvas(5, 5), nil); err == nil {
		t.Error("WritePNG into a missing directory succeeded")
	}
}

// TestDrawPhoto draws on a real photo.
func TestDrawPhoto(t *testing.T) {
	f, err := os.Open("../../testdata/images/waterview.jpg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	ents := chain.ParseTagged("pier <box>[[300, 520, 720, 830]]</box>, lake <box>[[0, 450, 999, 830]]</box>")
	chain.SetPixels(ents, img.Bounds().Dx(), img.Bounds().Dy())
	out := Draw(img, ents)
	x, y := int(ents[0].Pixel[0]), int(ents[0].Pixel[1]+ents[0].Pixel[3])/2
	if out.RGBAAt(x, y) != (color.RGBA{230, 25, 75, 255}) {
		t.Errorf("pier border at (%d, %d) is %v, want the first palette colour", x, y, out.RGBAAt(x, y))
	}
}
