package linalg

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/pancap-serve/pancap/kernels/dtype"
)

// roundInputs covers both 16-bit formats' cases: zeros, ties, subnormal
// halves, the largest halves and overflow, infinities, NaNs (quiet,
// signalling, with payloads) inside a vector, random values, and a tail.
func roundInputs() []float32 {
	rng := rand.New(rand.NewPCG(4, 4))
	xs := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 65504, 65520, -65520, 1e6,
		float32(math.Inf(1)), float32(math.Inf(-1)), 6e-8, 3e-8, 2.98e-8, 1e-10, 1e-40, -1e-40}
	// ties: fp16 (ulp 2^-10 at 1), then bf16 (ulp 2^-7)
	xs = append(xs, 1+1.0/2048, 1+3.0/2048, 1+5.0/2048, -1-1.0/2048, 1+1.0/256, 1+3.0/256, 1+5.0/256, -1-1.0/256)
	// a vector of its own with NaNs (the kernel leaves it to the scalar path)
	xs = append(xs, math.Float32frombits(0x7fc00000), math.Float32frombits(0xff812345),
		math.Float32frombits(0x7f800001), 2, 3, 4, 5, 6)
	for range 4000 {
		xs = append(xs, float32(rng.NormFloat64()*math.Pow(10, rng.Float64()*12-6)))
	}
	for range 200 {
		xs = append(xs, math.Float32frombits(rng.Uint32()))
	}
	return append(xs, 1.5, -2.25, 7) // a tail of 3 (and NaNs in some vectors)
}

func TestRound16MatchesScalar(t *testing.T) {
	xs := roundInputs()
	for _, c := range []struct {
		name   string
		bulk   func([]uint16, []float32)
		scalar func(float32) uint16
	}{{"f16", RoundF16, dtype.F32ToF16}, {"bf16", RoundBF16, dtype.F32ToBF16}} {
		got := make([]uint16, len(xs)+1)
		got[len(xs)] = 0xabcd
		c.bulk(got, xs)
		for i, x := range xs {
			if want := c.scalar(x); got[i] != want {
				t.Errorf("%s(%g = %#x): %#04x, want %#04x", c.name, x, math.Float32bits(x), got[i], want)
			}
		}
		if got[len(xs)] != 0xabcd {
			t.Errorf("%s wrote past the source's length", c.name)
		}
	}
}
