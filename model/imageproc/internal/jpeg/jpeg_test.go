package jpeg

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// referenceIDCT is the exact 8×8 inverse DCT in float64, level shifted.
func referenceIDCT(b *block) [blockSize]float64 {
	var out [blockSize]float64
	for y := range 8 {
		for x := range 8 {
			var s float64
			for v := range 8 {
				for u := range 8 {
					cu, cv := 1.0, 1.0
					if u == 0 {
						cu = math.Sqrt2 / 2
					}
					if v == 0 {
						cv = math.Sqrt2 / 2
					}
					s += cu * cv * float64(b[8*v+u]) *
						math.Cos(float64(2*x+1)*float64(u)*math.Pi/16) *
						math.Cos(float64(2*y+1)*float64(v)*math.Pi/16)
				}
			}
			out[8*y+x] = s/4 + 128
		}
	}
	return out
}

func TestIDCTISLOWNearExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var dst [blockSize]byte
	for n := range 300 {
		var b block
		for i := range b {
			if r.IntN(3) == 0 {
				b[i] = int32(r.IntN(121) - 60)
			}
		}
		b[0] = int32(r.IntN(801) - 400)
		want := referenceIDCT(&b)
		c := b
		idctISLOW(&c, dst[:], 8)
		for i, v := range dst {
			e := min(max(math.Round(want[i]), 0), 255)
			if math.Abs(float64(v)-e) > 1 {
				t.Fatalf("block %d sample %d = %d, exact %.2f", n, i, v, want[i])
			}
		}
	}
}

func TestIDCTISLOWDCOnly(t *testing.T) {
	var dst [blockSize]byte
	for _, c := range []struct {
		dc   int32
		want byte
	}{{0, 128}, {8, 129}, {4, 129}, {3, 128}, {-4, 128}, {-5, 127}, {1016, 255}, {-1024, 0}, {2000, 255}} {
		b := block{0: c.dc}
		idctISLOW(&b, dst[:], 8)
		for i, v := range dst {
			if v != c.want {
				t.Fatalf("dc %d: sample %d = %d, want %d", c.dc, i, v, c.want)
			}
		}
	}
}

func TestRangeLimitMatchesLibjpeg(t *testing.T) {
	for v, want := range map[int64]uint8{-129: 0, -128: 0, -1: 127, 0: 128, 127: 255, 128: 255, 511: 255, 512: 0, -512: 0, -513: 255, 1024: 128} {
		if got := rangeLimit(v); got != want {
			t.Errorf("rangeLimit(%d) = %d, want %d", v, got, want)
		}
	}
}

func TestFancyUpsamplingEdges(t *testing.T) {
	dst := make([]byte, 6)
	jpegFancyH2V1(dst, []byte{0, 100, 200})
	// Edges replicate; inner samples are 3/4 nearer + 1/4 further.
	if want := []byte{0, 25, 75, 125, 175, 200}; !bytes.Equal(dst, want) {
		t.Errorf("h2v1 = %v, want %v", dst, want)
	}
	jpegFancyH2V2(dst, []int32{0, 400, 800})
	if want := []byte{0, 25, 75, 125, 175, 200}; !bytes.Equal(dst, want) {
		t.Errorf("h2v2 = %v, want %v", dst, want)
	}
}

// maxFuzzPixels bounds what the fuzzed decoder may allocate.
const maxFuzzPixels = 1 << 16

// fuzzLimits keep every fuzz input cheap: a few full-image passes of work.
var fuzzLimits = Limits{MaxScans: 100, MaxWork: 4 * (blockSize + BlockOverhead) * maxFuzzPixels / 64}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("../../testdata/*.jpg")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Inspect(bytes.NewReader(data), fuzzLimits)
		if err != nil || info.Width*info.Height > maxFuzzPixels {
			return
		}
		img, err := Decode(context.Background(), bytes.NewReader(data), fuzzLimits)
		if err != nil {
			return
		}
		if b := img.Bounds(); b.Dx() != info.Width || b.Dy() != info.Height {
			t.Fatalf("bounds %v, inspected %d×%d", b, info.Width, info.Height)
		}
	})
}
