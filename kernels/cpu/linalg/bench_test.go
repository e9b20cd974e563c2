package linalg

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchShapes are the products the bench preset runs: prefill (576 image
// tokens; m=512 into the MLP) and batched decode (m = 1 … 16).
var benchShapes = []struct{ m, n, k int }{
	{576, 1024, 1024}, {512, 2816, 1024},
	{1, 1024, 1024}, {4, 1024, 1024}, {16, 1024, 1024},
	{1, 2816, 1024}, {16, 2816, 1024},
}

// weightRing is how many copies of the weights a benchmark cycles through
// so that they exceed the last-level cache, as a model's weights do.
func weightRing(bytes int) int { return max(1, (96<<20)/bytes) }

// BenchmarkMatMul reports GFLOP/s and the bytes of weights, activations and
// output per second for each dtype and shape.
func BenchmarkMatMul(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, s := range benchShapes {
		for _, wt := range wtypes {
			b.Run(fmt.Sprintf("%s/m%d_n%d_k%d", wt, s.m, s.n, s.k), func(b *testing.B) {
				esz := 2
				if wt == wF32 {
					esz = 4
				}
				ring := 1
				if s.m <= 16 {
					ring = weightRing(s.n * s.k * esz)
				}
				ops := make([]*operands, ring)
				for i := range ops {
					ops[i] = newOperands(rng, s.m, s.n, s.k)
				}
				out := make([]float32, s.m*s.n)
				b.ResetTimer()
				for i := range b.N {
					ops[i%ring].run(wt, out)
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				bytes := float64(s.n*s.k*esz + 4*s.m*(s.k+s.n))
				b.ReportMetric(2*float64(s.m*s.n*s.k)/sec/1e9, "GFLOP/s")
				b.ReportMetric(bytes/sec/1e9, "GB/s")
			})
		}
	}
}

// BenchmarkHandOff times a decode step's pattern of parallel ops (64
// batch-1 products of 1024×1024 bf16 weights, back to back) with workers
// that park as soon as they are idle and with the pool's spin-then-park
// (spinTime): the difference is the hand-off's cost. Run it with -count to
// alternate the two.
func BenchmarkHandOff(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	o := newOperands(rng, 1, 1024, 1024)
	out := make([]float32, 1024)
	for _, c := range []struct {
		name string
		spin time.Duration
	}{{"park", 0}, {"spin", spinTime}} {
		b.Run(c.name, func(b *testing.B) {
			defer spin.Store(int64(spinTime))
			spin.Store(int64(c.spin))
			for b.Loop() {
				for range 64 {
					o.run(wBF16, out)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(64*b.N), "µs/op")
		})
	}
}
