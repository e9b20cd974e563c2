package linalg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pancap-serve/pancap/kernels/cpu/linalg/vec"
	"github.com/pancap-serve/pancap/kernels/dtype"
)

// operands are the inputs of one product, with the weights in all three
// dtypes holding the same values (bf16/fp16-representable fp32s).
type operands struct {
	m, n, k   int
	x         []float32 // [m × k]
	w32       []float32 // [n × k]
	bf16, f16 []uint16  // [n × k]
}

func newOperands(rng *rand.Rand, m, n, k int) *operands {
	o := &operands{m: m, n: n, k: k, x: make([]float32, m*k), w32: make([]float32, n*k),
		bf16: make([]uint16, n*k), f16: make([]uint16, n*k)}
	for i := range o.x {
		o.x[i] = float32(rng.NormFloat64())
	}
	for i := range o.w32 {
		// An fp16 value with few mantissa bits is also exact in bf16.
		h := uint16(rng.IntN(0x7800)) &^ 0x7 // |w| < 32768, 7 mantissa bits
		if rng.IntN(2) == 0 {
			h |= 0x8000
		}
		if h&0x7c00 == 0 {
			h &= 0x8000 // no subnormals: bf16 keeps them but let both agree
		}
		o.f16[i] = h
		o.w32[i] = dtype.F16ToF32(h)
		o.bf16[i] = uint16(math.Float32bits(o.w32[i]) >> 16)
	}
	return o
}

// run computes the product with weights of type wt through the public API.
func (o *operands) run(wt wtype, out []float32) {
	switch wt {
	case wF32:
		MatMulF32(out, o.x, o.w32, o.m, o.n, o.k)
	case wBF16:
		MatMulBF16(out, o.x, o.bf16, o.m, o.n, o.k)
	case wF16:
		MatMulF16(out, o.x, o.f16, o.m, o.n, o.k)
	}
}

// sub returns the operands restricted to the given rows of x.
func (o *operands) sub(rows []int) *operands {
	s := *o
	s.m = len(rows)
	s.x = make([]float32, len(rows)*o.k)
	for r, i := range rows {
		copy(s.x[r*o.k:(r+1)*o.k], o.x[i*o.k:(i+1)*o.k])
	}
	return &s
}

var wtypes = []wtype{wF32, wBF16, wF16}

func (wt wtype) String() string { return [...]string{"f32", "bf16", "f16"}[wt] }

// checkClose compares got against the exact (float64) product: each
// element within tol·Σ|x·w| (plus a tiny absolute slack).
func checkClose(t *testing.T, label string, o *operands, got []float32, tol float64) {
	t.Helper()
	for i := range o.m {
		for j := range o.n {
			var exact, mag float64
			for p := range o.k {
				v := float64(o.x[i*o.k+p]) * float64(o.w32[j*o.k+p])
				exact += v
				mag += math.Abs(v)
			}
			if d := math.Abs(float64(got[i*o.n+j]) - exact); d > tol*mag+1e-30 || math.IsNaN(d) {
				t.Fatalf("%s m=%d n=%d k=%d: out[%d][%d] = %g, want %g (err %g > %g·%g)",
					label, o.m, o.n, o.k, i, j, got[i*o.n+j], exact, d, tol, mag)
			}
		}
	}
}

// withKernel runs f with the portable kernel forced when generic is set.
func withKernel(generic bool, f func()) {
	saved := fast
	if generic {
		fast = nil
	}
	defer func() { fast = saved }()
	f()
}

// kernels lists the kernels to test on this machine.
func kernels() []bool {
	if fast == nil {
		return []bool{true}
	}
	return []bool{false, true}
}

func kname(generic bool) string {
	if generic {
		return "go"
	}
	return Kernel()
}

var (
	testMs = []int{1, 2, 3, 4, 5, 7, 16, 17, 21, 37}
	testNs = []int{1, 2, 5, 23, 24, 25, 49, 100}
	testKs = []int{0, 1, 7, 8, 9, 15, 17, 64, 520, 1030, 2083}
)

// TestMatMulAccuracy checks every kernel and dtype against the exact
// product: the error of an fp32 sum of k terms is bounded by about
// k·2⁻²⁴·Σ|x·w|; the tolerance 2e-6·Σ|x·w| (k ≤ 1030, tree-shaped sums
// do better) leaves no room for a wrong term.
func TestMatMulAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, generic := range kernels() {
		withKernel(generic, func() {
			for _, k := range testKs {
				for _, m := range testMs {
					n := testNs[rng.IntN(len(testNs))]
					if testing.Short() && k > 100 && m > 5 {
						continue
					}
					o := newOperands(rng, m, n, k)
					out := make([]float32, m*n)
					for _, wt := range wtypes {
						for i := range out {
							out[i] = float32(math.NaN())
						}
						o.run(wt, out)
						tol := 2e-6 + float64(k)*0x1p-24
						checkClose(t, fmt.Sprintf("%s/%s", kname(generic), wt), o, out, tol)
					}
				}
			}
		})
	}
}

// TestFastMatchesReference compares the vector kernel with the portable
// one element by element on odd shapes; both sum the same fp32 products in
// different orders, so they agree to a few ulps of Σ|x·w|.
func TestFastMatchesReference(t *testing.T) {
	if fast == nil {
		t.Skip("no vector kernel on this CPU")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 40 {
		m, n, k := 1+rng.IntN(40), 1+rng.IntN(80), rng.IntN(700)
		o := newOperands(rng, m, n, k)
		for _, wt := range wtypes {
			got, want := make([]float32, m*n), make([]float32, m*n)
			o.run(wt, got)
			withKernel(true, func() { o.run(wt, want) })
			for i := range got {
				var mag float64
				r, c := i/n, i%n
				for p := range k {
					mag += math.Abs(float64(o.x[r*k+p]) * float64(o.w32[c*k+p]))
				}
				if d := math.Abs(float64(got[i] - want[i])); d > (float64(k)*0x1p-23)*mag {
					t.Fatalf("%s m=%d n=%d k=%d [%d]: fast %g, reference %g", wt, m, n, k, i, got[i], want[i])
				}
			}
		}
	}
}

// TestBatchInvariance checks bit for bit that a row's result does not
// depend on the other rows of the batch, its position in it, m (which
// switches between the direct and the blocked path), the column split,
// or whether the workers were free.
func TestBatchInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	m, n, k := 37, 77, 2083 // k: two and a bit KC blocks and an odd tail
	if testing.Short() {
		k = 523
	}
	o := newOperands(rng, m, n, k)
	for _, generic := range kernels() {
		withKernel(generic, func() {
			for _, wt := range wtypes {
				full := make([]float32, m*n)
				o.run(wt, full)
				for _, size := range []int{1, 2, 3, 4, 5, 16, 17, 20} {
					rows := rng.Perm(m)[:size]
					s := o.sub(rows)
					got := make([]float32, size*n)
					s.run(wt, got)
					for r, i := range rows {
						for j := range n {
							if math.Float32bits(got[r*n+j]) != math.Float32bits(full[i*n+j]) {
								t.Fatalf("%s/%s: row %d alone in a batch of %d: out[%d] = %g, in the batch of %d: %g",
									kname(generic), wt, i, size, j, got[r*n+j], m, full[i*n+j])
							}
						}
					}
				}
				// Columns [lo, hi) computed on their own, as a caller that
				// splits the columns would, and from inside Parallel (the
				// workers busy: no blocking scratch).
				lo, hi := 13, 61
				cols := *o
				cols.n = hi - lo
				cols.w32, cols.bf16, cols.f16 = o.w32[lo*k:hi*k], o.bf16[lo*k:hi*k], o.f16[lo*k:hi*k]
				got := make([]float32, m*cols.n)
				Parallel(2, func(a, b int) {
					if a == 0 {
						cols.run(wt, got)
					}
				})
				for i := range m {
					for j := range cols.n {
						if math.Float32bits(got[i*cols.n+j]) != math.Float32bits(full[i*n+lo+j]) {
							t.Fatalf("%s/%s: column split changed out[%d][%d]", kname(generic), wt, i, lo+j)
						}
					}
				}
			}
		})
	}
}

// TestBF16Parity: fp32 activations against bf16 weights must match the
// fp32 product of the widened weights (no activation rounding).
func TestBF16Parity(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	o := newOperands(rng, 20, 30, 300)
	a, b := make([]float32, 20*30), make([]float32, 20*30)
	o.run(wBF16, a)
	o.run(wF32, b)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("bf16 weights: out[%d] = %g, fp32 weights: %g", i, a[i], b[i])
		}
	}
}

func TestMatMulConcurrentCallers(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	o := newOperands(rng, 18, 50, 70)
	want := make([]float32, 18*50)
	o.run(wBF16, want)
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Go(func() {
			got := make([]float32, len(want))
			for range 20 {
				o.run(wBF16, got)
				for i := range got {
					if got[i] != want[i] {
						errs <- fmt.Sprintf("goroutine %d: out[%d] = %g, want %g", g, i, got[i], want[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func TestMatMulNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct{ m, n int }{{1, 200}, {40, 200}, {2, 20}} { // pooled, pooled blocked, serial
		m := c.m
		o := newOperands(rng, m, c.n, 256)
		out := make([]float32, m*c.n)
		o.run(wBF16, out) // grows the workers' scratch once
		if a := testing.AllocsPerRun(5, func() { o.run(wBF16, out) }); a != 0 {
			t.Errorf("m=%d: %v allocations per call", m, a)
		}
	}
}

func TestMatMulPanicsOnShortSlices(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a short weight slice")
		}
	}()
	MatMulF32(make([]float32, 4), make([]float32, 4), make([]float32, 3), 2, 2, 2)
}

func TestParallel(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 100} {
		var mu sync.Mutex
		seen := make([]int, n)
		Parallel(n, func(lo, hi int) {
			mu.Lock()
			defer mu.Unlock()
			for i := lo; i < hi; i++ {
				seen[i]++
			}
		})
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("n=%d: item %d ran %d times", n, i, c)
			}
		}
	}
	// Nested: the inner call finds the workers busy and runs inline.
	var mu sync.Mutex
	total := 0
	Parallel(4, func(lo, hi int) {
		Parallel(10, func(a, b int) {
			mu.Lock()
			total += b - a
			mu.Unlock()
		})
	})
	if want := 10 * min(4, Workers()); total != want {
		t.Fatalf("nested: %d items, want %d", total, want)
	}
}

// countTask counts the units it is given.
type countTask struct{ n atomic.Int64 }

func (c *countTask) Run(_, lo, hi int) { c.n.Add(int64(hi - lo)) }

// TestRunHandOff hammers the spin-then-park hand-off from three goroutines
// at once (the losers of the pool's lock run inline), with pauses longer
// than the spin so that workers and callers also park and are woken: every
// unit must run exactly once, and no op may return before its pieces are
// done (a late wake-up from an earlier op once let a caller return early and
// a worker rerun a stale piece).
func TestRunHandOff(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, spinTime} {
		t.Run(d.String(), func(t *testing.T) { handOff(t, d) })
	}
}

// handOff runs TestRunHandOff with the pool's spin time set to d (0: park
// at once, which makes the wake-up races likeliest).
func handOff(t *testing.T, d time.Duration) {
	defer spin.Store(int64(spinTime))
	spin.Store(int64(d))
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c countTask
			for i := range 50000 {
				n := 2 + (i+g)%7
				before := c.n.Load()
				Run(&c, n, 2)
				if got := c.n.Load() - before; got != int64(n) {
					t.Errorf("op %d of goroutine %d: %d units done when Run returned, want %d", i, g, got, n)
					return
				}
				if i%500 == 0 {
					time.Sleep(time.Duration(i%300) * time.Microsecond)
				}
			}
		}()
	}
	wg.Wait()
}

func TestParallelPanic(t *testing.T) {
	if Workers() < 2 {
		t.Skip("one worker")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a panic on a worker was not re-raised")
		}
	}()
	Parallel(Workers(), func(lo, hi int) {
		if lo > 0 {
			panic("boom")
		}
	})
}

func TestConversions(t *testing.T) {
	for _, c := range []struct {
		h    uint16
		want float32
	}{{0x3c00, 1}, {0xc000, -2}, {0x0001, 0x1p-24}, {0x7bff, 65504}, {0x8000, float32(math.Copysign(0, -1))}} {
		if got := dtype.F16ToF32(c.h); math.Float32bits(got) != math.Float32bits(c.want) {
			t.Errorf("dtype.F16ToF32(%#04x) = %g, want %g", c.h, got, c.want)
		}
	}
	if got := dtype.F16ToF32(0x7c00); !math.IsInf(float64(got), 1) {
		t.Errorf("dtype.F16ToF32(inf) = %g", got)
	}
	if got := dtype.BF16ToF32(0x3f80); got != 1 {
		t.Errorf("dtype.BF16ToF32(0x3f80) = %g", got)
	}
}

// FuzzMatMul checks the kernels against the exact product on fuzzed
// shapes and contents.
func FuzzMatMul(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint16(1), uint64(0))
	f.Add(uint8(17), uint8(25), uint16(523), uint64(1))
	f.Fuzz(func(t *testing.T, m, n uint8, k uint16, seed uint64) {
		mm, nn, kk := int(m%40), int(n%60), int(k%1100)
		o := newOperands(rand.New(rand.NewPCG(seed, 1)), mm, nn, kk)
		out := make([]float32, mm*nn)
		for _, wt := range wtypes {
			o.run(wt, out)
			checkClose(t, wt.String(), o, out, 2e-6+float64(kk)*0x1p-24)
		}
	})
}

// TestGemmF32Strided: a product over rows inside larger matrices equals,
// bit for bit, MatMulF32 on the same rows copied out, for every kernel.
func TestGemmF32Strided(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, generic := range kernels() {
		withKernel(generic, func() {
			for _, c := range []struct{ m, n, k int }{{1, 16, 64}, {5, 7, 9}, {20, 30, 100}, {3, 1, 1037}} {
				ldx, ldw, ldo := c.k+5, c.k+64, c.n+3
				x, w := make([]float32, c.m*ldx), make([]float32, c.n*ldw)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				for i := range w {
					w[i] = float32(rng.NormFloat64())
				}
				out := make([]float32, c.m*ldo)
				for i := range out {
					out[i] = -7 // the gaps between rows must stay untouched
				}
				GemmF32(out, ldo, x, ldx, w, ldw, c.m, c.n, c.k)
				o := &operands{m: c.m, n: c.n, k: c.k, x: make([]float32, c.m*c.k), w32: make([]float32, c.n*c.k)}
				for i := range c.m {
					copy(o.x[i*c.k:(i+1)*c.k], x[i*ldx:])
				}
				for j := range c.n {
					copy(o.w32[j*c.k:(j+1)*c.k], w[j*ldw:])
				}
				want := make([]float32, c.m*c.n)
				MatMulF32(want, o.x, o.w32, c.m, c.n, c.k)
				for i := range c.m {
					for j := range ldo {
						got := out[i*ldo+j]
						if j >= c.n {
							if got != -7 {
								t.Fatalf("%s %v: wrote the gap out[%d][%d]", kname(generic), c, i, j)
							}
							continue
						}
						if math.Float32bits(got) != math.Float32bits(want[i*c.n+j]) {
							t.Fatalf("%s %v: out[%d][%d] = %g, MatMulF32 %g", kname(generic), c, i, j, got, want[i*c.n+j])
						}
					}
				}
			}
		})
	}
	x, w, out := make([]float32, 4*80), make([]float32, 16*80), make([]float32, 4*16)
	if a := testing.AllocsPerRun(5, func() { GemmF32(out, 16, x, 80, w, 80, 4, 16, 64) }); a != 0 {
		t.Errorf("GemmF32: %v allocations per call", a)
	}
}

// TestDotMatchesMatMul: vec.Dot reduces in the GEMM kernel's order, so a
// score from Dot equals the same score from a product, bit for bit.
func TestDotMatchesMatMul(t *testing.T) {
	if fast == nil {
		t.Skip("portable kernels only")
	}
	rng := rand.New(rand.NewPCG(15, 16))
	for _, k := range []int{1, 7, 8, 9, 64, 100, 1037, 2100} {
		a, b := make([]float32, k), make([]float32, k)
		for i := range a {
			a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		out := make([]float32, 1)
		MatMulF32(out, a, b, 1, 1, k)
		if d := vec.Dot(a, b); math.Float32bits(d) != math.Float32bits(out[0]) {
			t.Fatalf("k=%d: Dot %g, MatMulF32 %g", k, d, out[0])
		}
	}
}

func TestGemmF32PanicsOnShortStrides(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a stride smaller than k")
		}
	}()
	GemmF32(make([]float32, 4), 2, make([]float32, 8), 3, make([]float32, 8), 4, 2, 2, 4)
}

// TestSpecialWeights: fp16 subnormals widen exactly, and Inf/NaN weights
// propagate to exactly the outputs that the reference gives Inf/NaN.
func TestSpecialWeights(t *testing.T) {
	if fast == nil {
		t.Skip("portable kernels only")
	}
	const m, n, k = 3, 5, 19
	w16 := make([]uint16, n*k)
	for i := range w16 {
		w16[i] = uint16(1 + i%0x3ff) // fp16 subnormals
	}
	w16[1*k+4] = 0x7c00       // +Inf in column 1
	w16[3*k+17] = 0x7e00      // NaN in column 3 (the k tail)
	wb := make([]uint16, n*k) // the same values truncated to bf16 (Inf, NaN kept)
	for i, h := range w16 {
		wb[i] = uint16(math.Float32bits(dtype.F16ToF32(h)) >> 16)
	}
	x := make([]float32, m*k)
	for i := range x {
		x[i] = 1 + float32(i%3)
	}
	for _, c := range []struct {
		name string
		run  func(out []float32)
	}{
		{"f16", func(out []float32) { MatMulF16(out, x, w16, m, n, k) }},
		{"bf16", func(out []float32) { MatMulBF16(out, x, wb, m, n, k) }},
	} {
		got, want := make([]float32, m*n), make([]float32, m*n)
		c.run(got)
		withKernel(true, func() { c.run(want) })
		for i := range got {
			g, w := float64(got[i]), float64(want[i])
			switch {
			case math.IsNaN(w) || math.IsInf(w, 0):
				if math.IsNaN(w) != math.IsNaN(g) || math.IsInf(w, 1) != math.IsInf(g, 1) {
					t.Fatalf("%s out[%d] = %g, reference %g", c.name, i, g, w)
				}
			case math.Abs(g-w) > 1e-6*math.Abs(w):
				t.Fatalf("%s out[%d] = %g, reference %g", c.name, i, g, w)
			}
		}
	}
}
