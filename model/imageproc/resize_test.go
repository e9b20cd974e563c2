package imageproc

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"math/rand/v2"
	"testing"

	"github.com/pancap-serve/pancap/model/imageproc/internal/pix"
)

// randomRGB is a w×h image of random samples, or of a few random colours in
// runs when smooth (clipping then depends on the padding more).
func randomRGB(r *rand.Rand, w, h int, smooth bool) *image.RGBA {
	m := pix.NewRGB(w, h)
	var c [3]byte
	for i := 0; i < len(m.Pix); i += 4 {
		if !smooth || r.IntN(16) == 0 {
			c = [3]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}
		}
		copy(m.Pix[i:i+3], c[:])
	}
	return m
}

func TestResizeMatchesOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	type tc struct{ w, h, size int }
	cases := []tc{
		{1, 1, 14}, {1, 1, 1}, {2, 1, 1}, {1, 2, 3}, {3, 3, 3}, {5, 3, 5}, {3, 5, 5},
		{1, 600, 14}, {600, 1, 14}, {1, 3000, 56}, {3000, 1, 56}, {2, 5000, 14}, {5000, 3, 14},
		{97, 61, 56}, {61, 97, 56}, {336, 200, 336}, {200, 336, 336}, {10, 20, 336}, {20, 10, 57},
		{700, 699, 56}, {1000, 17, 33}, {17, 1000, 33},
	}
	for range 40 {
		w, h := 1+r.IntN(400), 1+r.IntN(400)
		if r.IntN(3) == 0 {
			w = 1 + r.IntN(4)
		}
		if r.IntN(3) == 0 {
			h, w = w, h
		}
		cases = append(cases, tc{w, h, 1 + r.IntN(120)})
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dx%d-%d", c.w, c.h, c.size), func(t *testing.T) {
			for _, smooth := range []bool{false, true} {
				img := randomRGB(r, c.w, c.h, smooth)
				want := oraclePadAndResize(img, c.size)
				got, err := padAndResize(context.Background(), img, c.size)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Pix, want.Pix) {
					d := compareRGB(t, got, want)
					t.Fatalf("smooth=%v: %v", smooth, d)
				}
			}
		})
	}
}
