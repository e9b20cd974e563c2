package dtype

import (
	"math"
	"testing"
)

func TestF16RoundTripExhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		if h&0x7c00 == 0x7c00 && h&0x3ff != 0 {
			continue // NaN payloads collapse to the quiet NaN
		}
		if got := F32ToF16(F16ToF32(uint16(h))); got != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, F16ToF32(uint16(h)), got)
		}
	}
}

func TestRoundingToNearestEven(t *testing.T) {
	cases := []struct {
		f        float32
		f16, b16 uint16
	}{
		{1 + 1.0/2048, 0x3c00, 0x3f80},           // tie in f16 → even (1.0)
		{1 + 3.0/2048, 0x3c02, 0x3f80},           // tie → even (up)
		{1 + 1.0/256, 0x3c04, 0x3f80},            // bf16 tie → even (1.0)
		{1 + 3.0/256, 0x3c0c, 0x3f82},            // bf16 tie → even (up)
		{65520, 0x7c00, 0x4780},                  // rounds to inf in f16
		{float32(math.Ldexp(1, -25)), 0, 0x3300}, // half the smallest subnormal: tie → 0
		{float32(math.Ldexp(1.5, -25)), 1, 0x3340},
		{float32(math.Copysign(0, -1)), 0x8000, 0x8000},
		{float32(math.Inf(-1)), 0xfc00, 0xff80},
	}
	for _, c := range cases {
		if g := F32ToF16(c.f); g != c.f16 {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.f, g, c.f16)
		}
		if g := F32ToBF16(c.f); g != c.b16 {
			t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", c.f, g, c.b16)
		}
	}
	if F32ToBF16(float32(math.NaN())) != 0x7fc0 || F32ToF16(float32(math.NaN())) != 0x7e00 {
		t.Error("NaN not kept")
	}
}
