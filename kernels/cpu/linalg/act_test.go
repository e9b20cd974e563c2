package linalg

import (
	"math"
	"math/rand/v2"
	"testing"
)

// actInputs are values across the activations' range: zeros, tiny, around
// the sigmoid's bend, large of both signs (exp(-|t|) underflows past ~87),
// and a length that leaves a tail shorter than a vector.
func actInputs() []float32 {
	rng := rand.New(rand.NewPCG(3, 3))
	xs := []float32{0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1, -1, 20, -20, 60, -60, 100, -100, 1e30, -1e30}
	for range 1000 {
		xs = append(xs, float32(rng.NormFloat64()*4))
	}
	return append(xs, 0.5, -0.5, 3) // 1017 elements: a tail of 1
}

func sigmoid(t float64) float64 { return 1 / (1 + math.Exp(-t)) }

// checkAct compares got with want (computed in float64) within 8 ulp.
func checkAct(t *testing.T, name string, xs, got []float32, want func(i int) float64) {
	t.Helper()
	for i, g := range got {
		w := want(i)
		if d := math.Abs(float64(g) - w); d > 8*1.19e-7*math.Abs(w) && d > 1e-37 {
			t.Errorf("%s(%g) = %g, want %g", name, xs[i], g, w)
		}
	}
}

func TestSiLUMul(t *testing.T) {
	if Kernel() == "go" {
		t.Skip("no vector kernel: the caller's portable path runs")
	}
	xs := actInputs()
	c := make([]float32, len(xs))
	for i := range c {
		c[i] = float32(i%7) - 3
	}
	out := make([]float32, len(xs))
	if !SiLUMul(out, xs, c) {
		t.Fatal("SiLUMul reported no kernel")
	}
	checkAct(t, "silu·c", xs, out, func(i int) float64 {
		x := float64(xs[i])
		return x * sigmoid(x) * float64(c[i])
	})
	in := append([]float32(nil), xs...) // in place, and NaN stays NaN
	in[5] = float32(math.NaN())
	SiLUMul(in, in, c)
	if !math.IsNaN(float64(in[5])) || in[7] != out[7] {
		t.Errorf("in place: %g %g, want NaN %g", in[5], in[7], out[7])
	}
}

func TestQuickGELU(t *testing.T) {
	if Kernel() == "go" {
		t.Skip("no vector kernel: the caller's portable path runs")
	}
	xs := actInputs()
	out := make([]float32, len(xs))
	if !QuickGELU(out, xs) {
		t.Fatal("QuickGELU reported no kernel")
	}
	checkAct(t, "quick_gelu", xs, out, func(i int) float64 {
		x := float64(xs[i])
		return x * sigmoid(float64(float32(1.702)*xs[i]))
	})
}

// TestActPositionFree checks that an element's result does not depend on
// where it lies in a call (vector body or tail).
func TestActPositionFree(t *testing.T) {
	if Kernel() == "go" {
		t.Skip("no vector kernel")
	}
	xs := actInputs()
	all := make([]float32, len(xs))
	QuickGELU(all, xs)
	for i := range xs {
		one := make([]float32, 1)
		QuickGELU(one, xs[i:i+1])
		if one[0] != all[i] && !(math.IsNaN(float64(one[0])) && math.IsNaN(float64(all[i]))) {
			t.Fatalf("element %d: alone %g, in the call %g", i, one[0], all[i])
		}
	}
}

func TestExpShift(t *testing.T) {
	if Kernel() == "go" {
		t.Skip("no vector kernel: the caller's portable path runs")
	}
	xs := actInputs()
	s := float32(0)
	for _, x := range xs {
		s = max(s, x)
	}
	xs = append(xs, float32(math.Inf(-1)), s)
	out := make([]float32, len(xs))
	if !ExpShift(out, xs, s) {
		t.Fatal("ExpShift reported no kernel")
	}
	checkAct(t, "exp(x−max)", xs, out, func(i int) float64 {
		e := math.Exp(float64(xs[i]) - float64(s))
		if e < 1.1754944e-38 {
			return 0 // flushed
		}
		return e
	})
	if out[len(out)-2] != 0 || out[len(out)-1] != 1 {
		t.Errorf("exp(−Inf) = %g, exp(0) = %g", out[len(out)-2], out[len(out)-1])
	}
}
