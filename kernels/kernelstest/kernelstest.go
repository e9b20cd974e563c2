// Package kernelstest is the conformance suite every kernels.Backend must
// pass: each op is compared with a straightforward float64 reference on
// random, deliberately awkward shapes (M = 1, odd sizes, K not a multiple of
// 8), and the batch-invariance promise is checked bitwise. A backend's own
// test calls Run.
package kernelstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/dtype"
)

// Tolerances, as the maximum absolute error relative to the reference's
// largest magnitude (plus a small absolute floor).
const (
	// TolF32 bounds ops with float32 accumulation over ≤ a few hundred terms.
	TolF32 = 2e-5
	// TolTranscendental bounds GELU, SiLU, softmax-based ops.
	TolTranscendental = 5e-5
)

// Run runs the whole conformance suite against b.
func Run(t *testing.T, b kernels.Backend) {
	t.Run("ReadWriteCopy", func(t *testing.T) { testReadWriteCopy(t, b) })
	t.Run("SideQueue", func(t *testing.T) { testSideQueue(t, b) })
	t.Run("MatMul", func(t *testing.T) { testMatMul(t, b) })
	t.Run("MatMulBatchInvariance", func(t *testing.T) { testMatMulInvariance(t, b) })
	t.Run("Embed", func(t *testing.T) { testEmbed(t, b) })
	t.Run("CopyAddWeight", func(t *testing.T) { testCopyAddWeight(t, b) })
	t.Run("RMSNorm", func(t *testing.T) { testRMSNorm(t, b) })
	t.Run("AddRMSNorm", func(t *testing.T) { testAddRMSNorm(t, b) })
	t.Run("ConcatRows", func(t *testing.T) { testConcatRows(t, b) })
	t.Run("LayerNorm", func(t *testing.T) { testLayerNorm(t, b) })
	t.Run("RoPEStore", func(t *testing.T) { testRoPEStore(t, b) })
	t.Run("Elementwise", func(t *testing.T) { testElementwise(t, b) })
	t.Run("ScatterGather", func(t *testing.T) { testScatterGather(t, b) })
	t.Run("Attention", func(t *testing.T) { testAttention(t, b) })
	t.Run("PagedAttention", func(t *testing.T) { testPagedAttention(t, b) })
	t.Run("PagedAttentionShapes", func(t *testing.T) { testPagedAttentionShapes(t, b) })
	t.Run("PagedAttentionHalfCache", func(t *testing.T) { testPagedAttentionHalfCache(t, b) })
	t.Run("PagedAttentionChunks", func(t *testing.T) { testPagedAttentionChunks(t, b) })
	t.Run("LoadWeightErrors", func(t *testing.T) { testLoadWeightErrors(t, b) })
}

func rnd(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// upload writes host data into a fresh buffer.
func upload(b kernels.Backend, v []float32) kernels.Buffer {
	buf := b.Alloc(len(v))
	b.Write(buf, 0, v)
	return buf
}

func download(b kernels.Backend, buf kernels.Buffer, n int) []float32 {
	v := make([]float32, n)
	b.Read(v, buf, 0)
	return v
}

// encode rounds v to dt and returns the bytes and the rounded values.
func encode(dt kernels.DType, v []float32) ([]byte, []float64) {
	raw := make([]byte, len(v)*dt.Size())
	exact := make([]float64, len(v))
	for i, x := range v {
		switch dt {
		case kernels.F32:
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
			exact[i] = float64(x)
		case kernels.BF16:
			h := uint16(math.Float32bits(x) >> 16) // truncation is a valid bf16 value
			binary.LittleEndian.PutUint16(raw[2*i:], h)
			exact[i] = float64(math.Float32frombits(uint32(h) << 16))
		case kernels.F16:
			h := toF16(x)
			binary.LittleEndian.PutUint16(raw[2*i:], h)
			exact[i] = f16ToF64(h)
		}
	}
	return raw, exact
}

// toF16 rounds toward zero to a normal half (inputs here are |x| < 8).
func toF16(x float32) uint16 {
	bits := math.Float32bits(x)
	sign := uint16(bits>>16) & 0x8000
	exp := int(bits>>23&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	return sign | uint16(exp)<<10 | uint16(bits>>13&0x3ff)
}

func f16ToF64(h uint16) float64 {
	exp := int(h >> 10 & 0x1f)
	man := float64(h & 0x3ff)
	var v float64
	if exp == 0 {
		v = man / 1024 * math.Pow(2, -14)
	} else {
		v = (1 + man/1024) * math.Pow(2, float64(exp-15))
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

func load(t *testing.T, b kernels.Backend, dt kernels.DType, shape []int, v []float32) (kernels.Weight, []float64) {
	t.Helper()
	raw, exact := encode(dt, v)
	w, err := b.LoadWeight(dt, shape, raw)
	if err != nil {
		t.Fatalf("LoadWeight(%v, %v): %v", dt, shape, err)
	}
	return w, exact
}

// check compares got with want within tol relative to max|want| (floor 1).
func check(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: len %d, want %d", name, len(got), len(want))
	}
	scale := 1.0
	for _, w := range want {
		scale = max(scale, math.Abs(w))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol*scale) {
			t.Fatalf("%s: [%d] = %g, want %g (|Δ| %g > %g)", name, i, got[i], want[i], d, tol*scale)
		}
	}
}

func testReadWriteCopy(t *testing.T, b kernels.Backend) {
	v := randVec(rnd(1), 37)
	buf := upload(b, v)
	dst := b.Alloc(50)
	b.Copy(dst, 3, buf, 5, 20)
	got := download(b, dst, 50)
	for i := range got {
		want := float32(0)
		if i >= 3 && i < 23 {
			want = v[i+2]
		}
		if got[i] != want {
			t.Fatalf("Copy: [%d] = %g, want %g", i, got[i], want)
		}
	}
	part := make([]float32, 4)
	b.Read(part, buf, 30)
	for i, x := range part {
		if x != v[30+i] {
			t.Fatalf("Read at offset: [%d] = %g, want %g", i, x, v[30+i])
		}
	}
	b.Free(buf)
	b.Free(dst)
}

// testSideQueue: work queued on the side view, ordered by events, is seen
// by the main queue and the other way round; an event a drained queue waited
// for is done; the side's side is itself.
func testSideQueue(t *testing.T, b kernels.Backend) {
	s := b.Side()
	if s.Side() != s || b.Side() != s {
		t.Fatal("Side is not one view whose Side is itself")
	}
	const n = 3000
	v := randVec(rnd(11), n)
	x := upload(s, v)
	s.Add(x, x, x, n) // side: x = 2v
	e := s.Record()
	b.Wait(e)
	y := b.Alloc(n)
	b.Copy(y, 0, x, 0, n) // main, after the side's Add
	got := download(b, y, n)
	for i := range got {
		if got[i] != 2*v[i] {
			t.Fatalf("main queue after Wait: [%d] = %g, want %g", i, got[i], 2*v[i])
		}
	}
	if !e.Done() {
		t.Error("the side's event is not done after the main queue that waited for it drained")
	}
	e.Free()
	b.Add(y, y, y, n) // main: y = 4v
	e = b.Record()
	s.Wait(e)
	s.Add(x, x, y, n) // side: x = 6v
	f := s.Record()
	f.Sync()
	if !f.Done() {
		t.Error("an event is not done after Sync")
	}
	got = download(s, x, n)
	for i := range got {
		if want := float32(2*v[i]) + float32(4*v[i]); got[i] != want {
			t.Fatalf("side queue after Wait: [%d] = %g, want %g", i, got[i], want)
		}
	}
	e.Free()
	f.Free()
	s.Free(x)
	b.Free(y)
}

func refMatMul(x []float32, w, bias []float64, m, n, k int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += float64(x[i*k+p]) * w[j*k+p]
			}
			if bias != nil {
				s += bias[j]
			}
			out[i*n+j] = s
		}
	}
	return out
}

func testMatMul(t *testing.T, b kernels.Backend) {
	r := rnd(2)
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.F16} {
		for _, sh := range [][3]int{{1, 1, 1}, {1, 5, 7}, {3, 33, 13}, {7, 130, 70}, {2, 257, 9}} {
			m, n, k := sh[0], sh[1], sh[2]
			x := randVec(r, m*k)
			w, wx := load(t, b, dt, []int{n, k}, randVec(r, n*k))
			bias, bx := load(t, b, dt, []int{n}, randVec(r, n))
			xb, out := upload(b, x), b.Alloc(m*n)
			b.MatMul(out, xb, w, nil, m)
			check(t, dt.String()+" matmul", download(b, out, m*n), refMatMul(x, wx, nil, m, n, k), TolF32*math.Sqrt(float64(k)))
			b.MatMul(out, xb, w, bias, m)
			check(t, dt.String()+" matmul+bias", download(b, out, m*n), refMatMul(x, wx, bx, m, n, k), TolF32*math.Sqrt(float64(k)))
		}
	}
}

// testMatMulInvariance checks that each row of a batched product is bitwise
// the row computed alone.
func testMatMulInvariance(t *testing.T, b kernels.Backend) {
	r := rnd(3)
	m, n, k := 9, 300, 75
	x := randVec(r, m*k)
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16} {
		w, _ := load(t, b, dt, []int{n, k}, randVec(r, n*k))
		all := b.Alloc(m * n)
		b.MatMul(all, upload(b, x), w, nil, m)
		got := download(b, all, m*n)
		for i := 0; i < m; i++ {
			one := b.Alloc(n)
			b.MatMul(one, upload(b, x[i*k:(i+1)*k]), w, nil, 1)
			row := download(b, one, n)
			for j := range row {
				if row[j] != got[i*n+j] {
					t.Fatalf("%v row %d col %d: batched %g, alone %g", dt, i, j, got[i*n+j], row[j])
				}
			}
		}
	}
}

func testEmbed(t *testing.T, b kernels.Backend) {
	r := rnd(4)
	vocab, width := 11, 6
	table, tx := load(t, b, kernels.BF16, []int{vocab, width}, randVec(r, vocab*width))
	ids := []int32{3, -200, 10, 0, 3}
	out := b.Alloc(len(ids) * width)
	b.Write(out, width, []float32{9, 9, 9, 9, 9, 9})
	b.Embed(out, table, ids)
	want := make([]float64, len(ids)*width)
	for i, id := range ids {
		for j := 0; j < width; j++ {
			if id < 0 {
				want[i*width+j] = 9
			} else {
				want[i*width+j] = tx[int(id)*width+j]
			}
		}
	}
	check(t, "embed", download(b, out, len(want)), want, 0)
}

func testCopyAddWeight(t *testing.T, b kernels.Backend) {
	r := rnd(5)
	w, wx := load(t, b, kernels.F16, []int{3, 5}, randVec(r, 15))
	base := randVec(r, 20)
	buf := upload(b, base)
	b.AddWeight(buf, 2, w)
	want := make([]float64, 20)
	for i := range want {
		want[i] = float64(base[i])
		if i >= 2 && i < 17 {
			want[i] += wx[i-2]
		}
	}
	check(t, "AddWeight", download(b, buf, 20), want, TolF32)
	b.CopyWeight(buf, 4, w)
	for i := 4; i < 19; i++ {
		want[i] = wx[i-4]
	}
	check(t, "CopyWeight", download(b, buf, 20), want, TolF32)
}

func testRMSNorm(t *testing.T, b kernels.Backend) {
	r := rnd(6)
	for _, sh := range [][2]int{{1, 7}, {5, 64}, {3, 129}} {
		m, width := sh[0], sh[1]
		x := randVec(r, m*width)
		w, wx := load(t, b, kernels.F32, []int{width}, randVec(r, width))
		out := b.Alloc(m * width)
		b.RMSNorm(out, upload(b, x), w, m, 1e-5)
		want := make([]float64, m*width)
		for i := 0; i < m; i++ {
			var ss float64
			for _, v := range x[i*width : (i+1)*width] {
				ss += float64(v) * float64(v)
			}
			rs := 1 / math.Sqrt(ss/float64(width)+1e-5)
			for j := 0; j < width; j++ {
				want[i*width+j] = float64(x[i*width+j]) * rs * wx[j]
			}
		}
		check(t, "RMSNorm", download(b, out, m*width), want, TolF32)
	}
}

func testLayerNorm(t *testing.T, b kernels.Backend) {
	r := rnd(7)
	for _, sh := range [][2]int{{1, 9}, {4, 64}, {2, 131}} {
		m, width := sh[0], sh[1]
		x := randVec(r, m*width)
		for i := range x {
			x[i] += 3 // a mean far from zero
		}
		w, wx := load(t, b, kernels.BF16, []int{width}, randVec(r, width))
		bias, bx := load(t, b, kernels.F32, []int{width}, randVec(r, width))
		xb := upload(b, x)
		b.LayerNorm(xb, xb, w, bias, m, 1e-5) // in place
		want := make([]float64, m*width)
		for i := 0; i < m; i++ {
			row := x[i*width : (i+1)*width]
			var mean, vs float64
			for _, v := range row {
				mean += float64(v)
			}
			mean /= float64(width)
			for _, v := range row {
				vs += (float64(v) - mean) * (float64(v) - mean)
			}
			rs := 1 / math.Sqrt(vs/float64(width)+1e-5)
			for j, v := range row {
				want[i*width+j] = (float64(v)-mean)*rs*wx[j] + bx[j]
			}
		}
		check(t, "LayerNorm", download(b, xb, m*width), want, TolF32)
	}
}

func testElementwise(t *testing.T, b kernels.Backend) {
	r := rnd(9)
	n := 1001
	a, c := randVec(r, n), randVec(r, n)
	want := make([]float64, n)
	out := b.Alloc(n)
	ab, cb := upload(b, a), upload(b, c)

	b.Add(out, ab, cb, n)
	for i := range want {
		want[i] = float64(a[i]) + float64(c[i])
	}
	check(t, "Add", download(b, out, n), want, TolF32)

	// SiLUMul over 7 rows of gate|up pairs of width 143 (= 1001 / 7).
	gu := make([]float32, 0, 2*n)
	for i := 0; i < n; i += 143 {
		gu = append(append(gu, a[i:i+143]...), c[i:i+143]...)
	}
	b.SiLUMul(out, upload(b, gu), 7, 143)
	for i := range want {
		g := float64(a[i])
		want[i] = g / (1 + math.Exp(-g)) * float64(c[i])
	}
	check(t, "SiLUMul", download(b, out, n), want, TolTranscendental)

	g := upload(b, a)
	b.GELU(g, n)
	for i := range want {
		x := float64(a[i])
		want[i] = 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
	}
	check(t, "GELU", download(b, g, n), want, TolTranscendental)

	q := upload(b, a)
	b.QuickGELU(q, n)
	for i := range want {
		x := float64(a[i])
		want[i] = x / (1 + math.Exp(-1.702*x))
	}
	check(t, "QuickGELU", download(b, q, n), want, TolTranscendental)
}

func testScatterGather(t *testing.T, b kernels.Backend) {
	r := rnd(10)
	width := 5
	src := randVec(r, 3*width)
	dst := b.Alloc(8 * width)
	rows := []int32{6, 0, 3}
	b.ScatterRows(dst, upload(b, src), rows, width)
	back := b.Alloc(3 * width)
	b.GatherRows(back, dst, rows, width)
	got := download(b, back, 3*width)
	for i := range got {
		if got[i] != src[i] {
			t.Fatalf("scatter/gather: [%d] = %g, want %g", i, got[i], src[i])
		}
	}
	all := download(b, dst, 8*width)
	if all[width] != 0 || all[6*width] != src[0] {
		t.Fatalf("scatter wrote the wrong rows: %v", all)
	}
}

// refAttention is causal when causal is set; q row i of a sequence starting
// at position pos sees keys 0…pos+i of keys/values [nKeys × heads·hd].
func refAttention(q []float32, k, v [][]float32, heads, hd, pos int, causal bool) []float64 {
	rows := len(q) / (heads * hd)
	out := make([]float64, len(q))
	for i := 0; i < rows; i++ {
		n := len(k)
		if causal {
			n = pos + i + 1
		}
		for h := 0; h < heads; h++ {
			qv := q[(i*heads+h)*hd : (i*heads+h+1)*hd]
			sc := make([]float64, n)
			mx := math.Inf(-1)
			for p := 0; p < n; p++ {
				var d float64
				for j, x := range qv {
					d += float64(x) * float64(k[p][h*hd+j])
				}
				sc[p] = d / math.Sqrt(float64(hd))
				mx = max(mx, sc[p])
			}
			var sum float64
			for p := range sc {
				sc[p] = math.Exp(sc[p] - mx)
				sum += sc[p]
			}
			for p := range sc {
				for j := 0; j < hd; j++ {
					out[(i*heads+h)*hd+j] += sc[p] / sum * float64(v[p][h*hd+j])
				}
			}
		}
	}
	return out
}

func rowsOf(v []float32, width int) [][]float32 {
	var r [][]float32
	for i := 0; i+width <= len(v); i += width {
		r = append(r, v[i:i+width])
	}
	return r
}

// testAttention checks dense attention against the reference on a few
// geometries (one row, odd head sizes, head counts no multiple of 4,
// sequences longer than a row tile).
func testAttention(t *testing.T, b kernels.Backend) {
	r := rnd(11)
	for _, g := range [][4]int{{2, 5, 3, 6}, {3, 1, 1, 1}, {2, 37, 5, 9}, {1, 20, 4, 64}} {
		seqs, seqLen, heads, hd := g[0], g[1], g[2], g[3]
		width := heads * hd
		n := seqs * seqLen * width
		q, k, v := randVec(r, n), randVec(r, n), randVec(r, n)
		out := b.Alloc(n)
		b.Attention(out, upload(b, q), upload(b, k), upload(b, v), seqs, seqLen, heads, hd)
		got := download(b, out, n)
		for s := 0; s < seqs; s++ {
			lo, hi := s*seqLen*width, (s+1)*seqLen*width
			want := refAttention(q[lo:hi], rowsOf(k[lo:hi], width), rowsOf(v[lo:hi], width), heads, hd, 0, false)
			check(t, fmt.Sprintf("Attention %v", g), got[lo:hi], want, TolTranscendental)
		}
	}
}

// testPagedAttention runs three sequences (a prefill chunk in the middle of
// a sequence, a decode step, a fresh prefill) through a shuffled block pool,
// checks them against the dense causal reference, and checks that each
// sequence alone gives bitwise the same rows.
func testPagedAttention(t *testing.T, b kernels.Backend) {
	pagedAttention(t, b, 12, 2, 8, 4, [][2]int{{5, 4}, {9, 1}, {0, 3}})
}

// testPagedAttentionHalfCache runs pagedAttention over 16-bit caches (where
// the backend offers them): ScatterRows rounds to the cache's type and the
// reference sees the rounded keys and values.
func testPagedAttentionHalfCache(t *testing.T, b kernels.Backend) {
	for i, dt := range []kernels.DType{kernels.BF16, kernels.F16} {
		t.Run(dt.String(), func(t *testing.T) {
			if c, err := b.AllocCache(1, dt); errors.Is(err, kernels.ErrCacheType) {
				t.Skipf("%s: %v", b.Name(), err)
			} else if err != nil {
				t.Fatal(err)
			} else {
				b.Free(c)
			}
			pagedAttentionOf(t, b, uint64(40+i), 7, 64, 16, [][2]int{{35, 1}, {0, 17}, {5, 4}}, dt)
			pagedAttentionOf(t, b, uint64(50+i), 5, 5, 3, [][2]int{{0, 1}, {7, 9}}, dt)
		})
	}
}

// testPagedAttentionShapes runs pagedAttention on awkward geometries: head
// counts that are no multiple of 4, odd head sizes, one position, one
// position per block (many blocks), prefills longer than a row tile, many
// decode rows.
func testPagedAttentionShapes(t *testing.T, b kernels.Backend) {
	for i, g := range []struct {
		heads, hd, bs int
		cases         [][2]int
	}{
		{1, 1, 1, [][2]int{{0, 1}, {3, 2}}},
		{5, 5, 3, [][2]int{{0, 1}, {7, 9}, {2, 1}}},
		{6, 12, 1, [][2]int{{40, 1}, {0, 11}, {13, 6}}},
		{7, 64, 16, [][2]int{{0, 1}, {35, 1}, {16, 17}}},
		{3, 20, 5, [][2]int{{24, 1}, {0, 23}}},
		// many decode rows of many heads: a backend may give a batch's
		// rows wider work units than a row alone
		{16, 8, 4, [][2]int{{9, 1}, {3, 1}, {17, 1}, {0, 1}, {5, 1}, {30, 1}, {12, 1}, {7, 1}, {2, 6}}},
	} {
		t.Run(fmt.Sprintf("heads=%d,hd=%d,bs=%d", g.heads, g.hd, g.bs), func(t *testing.T) {
			pagedAttention(t, b, uint64(100+i), g.heads, g.hd, g.bs, g.cases)
		})
	}
}

// pagedAttention runs one call of sequences given as {pos, rows} through a
// shuffled block pool of a float32 cache, checks them against the dense
// causal reference, and checks that each sequence alone gives bitwise the
// same rows.
func pagedAttention(t *testing.T, b kernels.Backend, seed uint64, heads, hd, bs int, shapes [][2]int) {
	pagedAttentionOf(t, b, seed, heads, hd, bs, shapes, kernels.F32)
}

// pagedAttentionOf is pagedAttention with caches of type dt.
func pagedAttentionOf(t *testing.T, b kernels.Backend, seed uint64, heads, hd, bs int, shapes [][2]int, dt kernels.DType) {
	t.Helper()
	r := rnd(seed)
	width := heads * hd
	type seqCase struct {
		pos, rows int
		k, v      [][]float32 // all positions 0…pos+rows-1
		blocks    []int32
	}
	var cases []*seqCase
	nBlocks := 0
	for _, sh := range shapes {
		cases = append(cases, &seqCase{pos: sh[0], rows: sh[1]})
		nBlocks += (sh[0] + sh[1] + bs - 1) / bs
	}
	nBlocks += 2 // unused blocks in the pool
	kc, err := b.AllocCache(nBlocks*bs*width, dt)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := b.AllocCache(nBlocks*bs*width, dt)
	defer b.Free(kc)
	defer b.Free(vc)
	perm := r.Perm(nBlocks)
	next := 0
	for _, c := range cases {
		total := c.pos + c.rows
		for i := 0; i*bs < total; i++ {
			c.blocks = append(c.blocks, int32(perm[next]))
			next++
		}
		c.k, c.v = rowsOf(randVec(r, total*width), width), rowsOf(randVec(r, total*width), width)
		for p := 0; p < total; p++ {
			slot := []int32{c.blocks[p/bs]*int32(bs) + int32(p%bs)}
			b.ScatterRows(kc, upload(b, c.k[p]), slot, width)
			b.ScatterRows(vc, upload(b, c.v[p]), slot, width)
			roundTo(dt, c.k[p])
			roundTo(dt, c.v[p])
		}
	}
	var seqs []kernels.Seq
	var q []float32
	row := 0
	for _, c := range cases {
		seqs = append(seqs, kernels.Seq{Row: row, Rows: c.rows, Pos: c.pos, Blocks: c.blocks})
		q = append(q, randVec(r, c.rows*width)...)
		row += c.rows
	}
	out := b.Alloc(len(q))
	b.PagedAttention(out, upload(b, q), kc, vc, seqs, heads, hd, bs)
	got := download(b, out, len(q))
	for i, c := range cases {
		s := seqs[i]
		lo, hi := s.Row*width, (s.Row+s.Rows)*width
		want := refAttention(q[lo:hi], c.k, c.v, heads, hd, c.pos, true)
		check(t, "PagedAttention", got[lo:hi], want, TolTranscendental)

		alone := b.Alloc(hi - lo)
		one := s
		one.Row = 0
		b.PagedAttention(alone, upload(b, q[lo:hi]), kc, vc, []kernels.Seq{one}, heads, hd, bs)
		for j, x := range download(b, alone, hi-lo) {
			if x != got[lo+j] {
				t.Fatalf("PagedAttention seq %d: batched %g, alone %g at %d", i, got[lo+j], x, j)
			}
		}
	}
}

// roundTo rounds x in place to dt's precision (to nearest, ties to even),
// as ScatterRows stores it in a cache of type dt.
func roundTo(dt kernels.DType, x []float32) {
	for i, v := range x {
		switch dt {
		case kernels.BF16:
			x[i] = dtype.BF16ToF32(dtype.F32ToBF16(v))
		case kernels.F16:
			x[i] = dtype.F16ToF32(dtype.F32ToF16(v))
		}
	}
}

// testPagedAttentionChunks checks that a 70-row prefill gives bitwise the
// same rows as the same prefill split into chunks (as separate Seqs of one
// call and as separate calls).
func testPagedAttentionChunks(t *testing.T, b kernels.Backend) {
	r := rnd(13)
	heads, hd, bs, rows := 2, 16, 8, 70
	width := heads * hd
	blocks := []int32{3, 0, 7, 1, 8, 2, 6, 4, 5}
	kc, vc := b.Alloc(10*bs*width), b.Alloc(10*bs*width)
	for p := 0; p < rows; p++ {
		slot := []int32{blocks[p/bs]*int32(bs) + int32(p%bs)}
		b.ScatterRows(kc, upload(b, randVec(r, width)), slot, width)
		b.ScatterRows(vc, upload(b, randVec(r, width)), slot, width)
	}
	q := upload(b, randVec(r, rows*width))
	whole := b.Alloc(rows * width)
	b.PagedAttention(whole, q, kc, vc, []kernels.Seq{{Row: 0, Rows: rows, Pos: 0, Blocks: blocks}}, heads, hd, bs)
	want := download(b, whole, rows*width)

	split := b.Alloc(rows * width)
	b.PagedAttention(split, q, kc, vc, []kernels.Seq{
		{Row: 0, Rows: 30, Pos: 0, Blocks: blocks},
		{Row: 30, Rows: 1, Pos: 30, Blocks: blocks},
		{Row: 31, Rows: 39, Pos: 31, Blocks: blocks},
	}, heads, hd, bs)
	for i, x := range download(b, split, rows*width) {
		if x != want[i] {
			t.Fatalf("chunked prefill row %d differs: %g vs %g", i/width, x, want[i])
		}
	}
	one := b.Alloc(width)
	for _, row := range []int{0, 17, 69} {
		b.Copy(one, 0, q, row*width, width)
		b.PagedAttention(split, one, kc, vc, []kernels.Seq{{Row: 0, Rows: 1, Pos: row, Blocks: blocks}}, heads, hd, bs)
		got := download(b, split, width)
		for i, x := range got {
			if x != want[row*width+i] {
				t.Fatalf("decode of row %d differs from its prefill: %g vs %g", row, x, want[row*width+i])
			}
		}
	}
}

func testLoadWeightErrors(t *testing.T, b kernels.Backend) {
	if _, err := b.LoadWeight(kernels.F32, []int{2, 3}, make([]byte, 20)); err == nil {
		t.Error("LoadWeight accepted 20 bytes for a float32 [2 3]")
	}
	if _, err := b.LoadWeight(kernels.DType(99), []int{2}, make([]byte, 8)); err == nil {
		t.Error("LoadWeight accepted an unknown dtype")
	}
	if _, err := b.LoadWeight(kernels.BF16, []int{0, 3}, nil); err == nil {
		t.Error("LoadWeight accepted a zero dimension")
	}
}
