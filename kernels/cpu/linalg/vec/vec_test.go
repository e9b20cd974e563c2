package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestDotAxpy(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, n := range []int{0, 1, 3, 7, 8, 9, 31, 32, 33, 64, 100, 1000} {
		a, b := make([]float32, n), make([]float32, n+3)
		var exact, mag float64
		for i := range b {
			b[i] = float32(rng.NormFloat64())
		}
		for i := range a {
			a[i] = float32(rng.NormFloat64())
			exact += float64(a[i]) * float64(b[i])
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		for name, f := range map[string]func(a, b []float32) float32{"Dot": Dot, "dotGo": dotGo} {
			if d := math.Abs(float64(f(a, b)) - exact); d > float64(n+1)*0x1p-24*mag+1e-30 {
				t.Fatalf("%s n=%d: %g, want %g", name, n, f(a, b), exact)
			}
		}
		for name, f := range map[string]func(a float32, x, y []float32){"Axpy": Axpy, "axpyGo": axpyGo} {
			y := append([]float32(nil), b[:n]...)
			f(0.5, a, y)
			for i := range y {
				if want := float64(b[i]) + 0.5*float64(a[i]); math.Abs(float64(y[i])-want) > 1e-6*math.Abs(want)+1e-7 {
					t.Fatalf("%s n=%d [%d]: %g, want %g", name, n, i, y[i], want)
				}
			}
		}
	}
}

func TestDotPanicsOnShortB(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	Dot(make([]float32, 3), make([]float32, 2))
}

func BenchmarkDot64(b *testing.B) {
	x, y := make([]float32, 64), make([]float32, 64)
	var s float32
	for range b.N {
		s += Dot(x, y)
	}
	b.ReportMetric(float64(2*64*b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	_ = s
}
