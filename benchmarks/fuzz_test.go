package benchmarks

import (
	"bytes"
	"image"
	"testing"
)

func FuzzParseLenDist(f *testing.F) {
	f.Add("150,200,60,450~10%")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseLenDist(s)
		if err != nil {
			return
		}
		back, err := ParseLenDist(d.String())
		if err != nil || len(back.Lens) != len(d.Lens) || back.Spread != d.Spread {
			t.Fatalf("%q → %q → %+v, %v", s, d.String(), back, err)
		}
		if len(d.Lens) == 0 || len(d.Lens) > 4 || d.Spread < 0 || d.Spread >= 1 {
			t.Fatalf("%q accepted as %+v", s, d)
		}
	})
}

func FuzzParseSLO(f *testing.F) {
	f.Add("ttft:500,tpot:50,e2e:20000")
	f.Fuzz(func(t *testing.T, s string) {
		slo, err := ParseSLO(s)
		if err != nil {
			return
		}
		if !slo.Set() || slo.TTFT < 0 || slo.TPOT < 0 || slo.E2E < 0 {
			t.Fatalf("%q accepted as %+v", s, slo)
		}
		if back, err := ParseSLO(slo.String()); err != nil || back != slo {
			t.Fatalf("%q → %q → %+v, %v", s, slo.String(), back, err)
		}
	})
}

func FuzzParseRate(f *testing.F) {
	f.Add("2.5")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if !(r > 0) {
			t.Fatalf("%q accepted as %v", s, r)
		}
		if back, err := ParseRate(r.String()); err != nil || back != r {
			t.Fatalf("%q → %v → %v, %v", s, r, back, err)
		}
	})
}

func FuzzParseSizes(f *testing.F) {
	f.Add("640x480,1000x667")
	f.Fuzz(func(t *testing.T, s string) {
		sizes, err := ParseSizes(s)
		if err != nil {
			return
		}
		for _, sz := range sizes {
			if sz[0] < 1 || sz[1] < 1 || sz[0] > 8192 || sz[1] > 8192 {
				t.Fatalf("%q accepted as %v", s, sizes)
			}
		}
	})
}

// FuzzTagged checks that tagging never breaks a stream the decoders accept.
func FuzzTagged(f *testing.F) {
	imgs, err := Synthetic([][2]int{{4, 3}}, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(imgs[0].Data, "tag")
	f.Fuzz(func(t *testing.T, data []byte, tag string) {
		out, err := Tagged(data, tag)
		if err != nil {
			return
		}
		if len(out) != len(data)+len(tag)+4 && len(out) != len(data)+len(tag)+20 {
			t.Fatalf("%d bytes in, %d out", len(data), len(out))
		}
		want, wantFormat, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			return
		}
		got, format, err := image.DecodeConfig(bytes.NewReader(out))
		if err != nil || got != want || format != wantFormat {
			t.Fatalf("tagged %s: %+v %s %v, want %+v", wantFormat, got, format, err, want)
		}
	})
}
