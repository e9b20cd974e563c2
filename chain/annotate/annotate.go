// Package annotate draws PancapChain's entities on their image: each
// entity's pixel box as a coloured outline and its tag in a filled label
// above it, so people can look at boxes instead of reading coordinates.
package annotate

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strings"

	"golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/inconsolata"
	"golang.org/x/image/math/fixed"

	"github.com/pancap-serve/pancap/chain"
)

// palette holds well separated colours; tags take them in order of first
// appearance and wrap around after the last.
var palette = []color.RGBA{
	{230, 25, 75, 255}, {60, 180, 75, 255}, {255, 225, 25, 255}, {0, 130, 200, 255},
	{245, 130, 48, 255}, {145, 30, 180, 255}, {70, 240, 240, 255}, {240, 50, 230, 255},
	{210, 245, 60, 255}, {250, 190, 212, 255}, {0, 128, 128, 255}, {220, 190, 255, 255},
	{170, 110, 40, 255}, {255, 250, 200, 255}, {128, 0, 0, 255}, {170, 255, 195, 255},
	{128, 128, 0, 255}, {255, 215, 180, 255}, {0, 0, 128, 255}, {255, 255, 255, 255},
}

// face is the label font: 8×16 pixel cells.
var face = inconsolata.Bold8x16

// Sizes at scale 1; Draw multiplies them by a scale that grows with the
// image (1 up to 1499 px on the long side, 2 up to 2499, …).
const (
	lineWidth = 3 // box outline
	padX      = 3 // label padding left and right of the text
	padY      = 1 // label padding above and below the text
)

// Draw returns a copy of img with every entity's Pixel box outlined and its
// tag written in a label above the box (inside its top edge when there is no
// room above). Each distinct tag gets its own colour; an empty tag gets a
// box and no label. Runes the font lacks (outside printable ASCII) are drawn
// as '?'. Pixel boxes must be set (chain.SetPixels); they are clipped to
// the image.
func Draw(img image.Image, ents []chain.Entity) *image.RGBA {
	b := img.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(dst, dst.Bounds(), img, b.Min, draw.Src)
	scale := 1 + max(b.Dx(), b.Dy())/1500
	colours := map[string]color.RGBA{}
	colourOf := func(tag string) color.RGBA {
		c, ok := colours[tag]
		if !ok {
			c = palette[len(colours)%len(palette)]
			colours[tag] = c
		}
		return c
	}
	rects := make([]image.Rectangle, len(ents))
	for i, e := range ents {
		rects[i] = pixelRect(e.Pixel).Intersect(dst.Bounds())
		outline(dst, rects[i], lineWidth*scale, colourOf(e.Tag))
	}
	// Labels go on top of every outline.
	for i, e := range ents {
		if e.Tag != "" && !rects[i].Empty() {
			label(dst, rects[i], e.Tag, colourOf(e.Tag), scale)
		}
	}
	return dst
}

// WritePNG draws ents on img (see Draw) and writes the result to path as a
// PNG file.
func WritePNG(path string, img image.Image, ents []chain.Entity) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("annotate: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("annotate: %w", cerr)
		}
	}()
	if err := png.Encode(f, Draw(img, ents)); err != nil {
		return fmt.Errorf("annotate: encode %s: %w", path, errors.Join(err, os.Remove(path)))
	}
	return nil
}

// pixelRect rounds a pixel box to whole pixels: [X1, X2) × [Y1, Y2).
func pixelRect(p chain.PixelBox) image.Rectangle {
	r := func(v float64) int { return int(math.Round(v)) }
	return image.Rect(r(p[0]), r(p[1]), r(p[2]), r(p[3]))
}

// outline draws the border of r, width pixels thick, inside r.
func outline(dst *image.RGBA, r image.Rectangle, width int, c color.RGBA) {
	if r.Empty() {
		return
	}
	src := image.NewUniform(c)
	width = min(width, r.Dx(), r.Dy())
	for _, side := range []image.Rectangle{
		image.Rect(r.Min.X, r.Min.Y, r.Max.X, r.Min.Y+width), // top
		image.Rect(r.Min.X, r.Max.Y-width, r.Max.X, r.Max.Y), // bottom
		image.Rect(r.Min.X, r.Min.Y, r.Min.X+width, r.Max.Y), // left
		image.Rect(r.Max.X-width, r.Min.Y, r.Max.X, r.Max.Y), // right
	} {
		draw.Draw(dst, side, src, image.Point{}, draw.Src)
	}
}

// label writes text on a filled tag of colour c above box (or inside its
// top edge when the box touches the top of the image), scaled by scale.
func label(dst *image.RGBA, box image.Rectangle, text string, c color.RGBA, scale int) {
	text = printable(text)
	m := face.Metrics()
	textW := font.MeasureString(face, text).Ceil()
	small := image.NewRGBA(image.Rect(0, 0, textW+2*padX, m.Height.Ceil()+2*padY))
	draw.Draw(small, small.Bounds(), image.NewUniform(c), image.Point{}, draw.Src)
	d := font.Drawer{
		Dst:  small,
		Src:  image.NewUniform(ink(c)),
		Face: face,
		Dot:  fixed.P(padX, padY+m.Ascent.Ceil()),
	}
	d.DrawString(text)

	w, h := small.Bounds().Dx()*scale, small.Bounds().Dy()*scale
	x := min(box.Min.X, dst.Bounds().Max.X-w) // keep it on the image when it fits
	x = max(x, 0)
	y := box.Min.Y - h
	if y < 0 {
		y = box.Min.Y
	}
	draw.NearestNeighbor.Scale(dst, image.Rect(x, y, x+w, y+h), small, small.Bounds(), draw.Src, nil)
}

// ink is black or white, whichever reads better on c.
func ink(c color.RGBA) color.Color {
	if 299*int(c.R)+587*int(c.G)+114*int(c.B) > 150_000 {
		return color.Black
	}
	return color.White
}

// printable replaces runes the 8×16 font cannot draw with '?'.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}
