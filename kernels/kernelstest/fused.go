package kernelstest

import (
	"errors"
	"math"
	"testing"

	"github.com/pancap-serve/pancap/kernels"
)

// The fused ops of a LLaMA layer: AddRMSNorm, ConcatRows, RoPEStore.

// testAddRMSNorm checks AddRMSNorm bitwise against Add then RMSNorm, and
// that it writes the sum back to x.
func testAddRMSNorm(t *testing.T, b kernels.Backend) {
	r := rnd(20)
	for _, sh := range [][2]int{{1, 7}, {5, 64}, {3, 129}} {
		m, width := sh[0], sh[1]
		x, d := randVec(r, m*width), randVec(r, m*width)
		w, _ := load(t, b, kernels.BF16, []int{width}, randVec(r, width))
		xf, out := upload(b, x), b.Alloc(m*width)
		b.AddRMSNorm(out, xf, upload(b, d), w, m, 1e-5)
		xs, want := upload(b, x), b.Alloc(m*width)
		b.Add(xs, xs, upload(b, d), m*width)
		b.RMSNorm(want, xs, w, m, 1e-5)
		bitwise(t, "AddRMSNorm x", download(b, xf, m*width), download(b, xs, m*width))
		bitwise(t, "AddRMSNorm out", download(b, out, m*width), download(b, want, m*width))
	}
}

// bitwise fails unless got and want are the same bits.
func bitwise(t *testing.T, name string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: [%d] = %g, want %g bit for bit", name, i, got[i], want[i])
		}
	}
}

// testConcatRows checks that the product with concatenated weights equals
// the separate products bit for bit, per dtype, and that mismatched parts
// are refused.
func testConcatRows(t *testing.T, b kernels.Backend) {
	r := rnd(21)
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.F16} {
		m, k, rows := 3, 37, []int{5, 11, 2}
		x := upload(b, randVec(r, m*k))
		var parts []kernels.Weight
		var want [][]float32
		n := 0
		for _, nr := range rows {
			w, _ := load(t, b, dt, []int{nr, k}, randVec(r, nr*k))
			out := b.Alloc(m * nr)
			b.MatMul(out, x, w, nil, m)
			want = append(want, download(b, out, m*nr))
			parts = append(parts, w)
			n += nr
		}
		c, err := b.ConcatRows(parts)
		if err != nil {
			t.Fatal(err)
		}
		if sh := c.Shape(); len(sh) != 2 || sh[0] != n || sh[1] != k || c.DType() != dt {
			t.Fatalf("ConcatRows: %v %v, want %v [%d %d]", c.DType(), sh, dt, n, k)
		}
		out := b.Alloc(m * n)
		b.MatMul(out, x, c, nil, m)
		got := download(b, out, m*n)
		col := 0
		for p, nr := range rows {
			for i := 0; i < m; i++ {
				bitwise(t, "ConcatRows "+dt.String(), got[i*n+col:i*n+col+nr], want[p][i*nr:(i+1)*nr])
			}
			col += nr
		}
	}
	a, _ := load(t, b, kernels.F32, []int{2, 4}, randVec(r, 8))
	c, _ := load(t, b, kernels.F32, []int{2, 5}, randVec(r, 10))
	if _, err := b.ConcatRows([]kernels.Weight{a, c}); !errors.Is(err, kernels.ErrWeight) {
		t.Errorf("ConcatRows of widths 4 and 5: %v, want ErrWeight", err)
	}
}

// testRoPEStore checks RoPEStore against float64 rotation (query and key)
// and an exact copy (value), on a float32 cache; on 16-bit caches that it
// stores what ScatterRows stores, through PagedAttention bit for bit.
func testRoPEStore(t *testing.T, b kernels.Backend) {
	r := rnd(8)
	heads, hd, bs := 3, 10, 4
	w := heads * hd
	pos := []int32{0, 1, 17, 700, 4095}
	slots := []int32{9, 2, 14, 0, 5}
	m := len(pos)
	qkv := randVec(r, m*3*w)
	q, kc, vc := b.Alloc(m*w), b.Alloc(4*bs*w), b.Alloc(4*bs*w)
	qkvb := upload(b, qkv)
	b.RoPEStore(q, kc, vc, qkvb, pos, slots, heads, hd, 10000)
	wantQ, wantK, wantV := make([]float64, m*w), make([]float64, m*w), make([]float64, m*w)
	half := hd / 2
	for i, p := range pos {
		row := qkv[i*3*w:]
		for h := 0; h < heads; h++ {
			for d := 0; d < half; d++ {
				a := float64(p) * math.Pow(10000, -float64(2*d)/float64(hd))
				c, s := math.Cos(a), math.Sin(a)
				for part, want := range [][]float64{wantQ, wantK} {
					x1, x2 := float64(row[part*w+h*hd+d]), float64(row[part*w+h*hd+d+half])
					want[i*w+h*hd+d] = x1*c - x2*s
					want[i*w+h*hd+d+half] = x2*c + x1*s
				}
			}
		}
		for j := 0; j < w; j++ {
			wantV[i*w+j] = float64(row[2*w+j])
		}
	}
	// Angles up to 4095 rad computed in float32 carry ~2e-4 rad of error.
	check(t, "RoPEStore q", download(b, q, m*w), wantQ, 1e-3)
	gk, gv := b.Alloc(m*w), b.Alloc(m*w)
	b.GatherRows(gk, kc, slots, w)
	b.GatherRows(gv, vc, slots, w)
	check(t, "RoPEStore k", download(b, gk, m*w), wantK, 1e-3)
	check(t, "RoPEStore v", download(b, gv, m*w), wantV, 0)

	// 16-bit caches: the same rows as ScatterRows of the float32 ones.
	seqs := []kernels.Seq{{Row: 0, Rows: 1, Pos: 4*bs - 1, Blocks: []int32{0, 1, 2, 3}}}
	for _, dt := range []kernels.DType{kernels.BF16, kernels.F16} {
		kh, err := b.AllocCache(4*bs*w, dt)
		if errors.Is(err, kernels.ErrCacheType) {
			t.Logf("%s: %v", b.Name(), err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		vh, _ := b.AllocCache(4*bs*w, dt)
		ks, _ := b.AllocCache(4*bs*w, dt)
		vs, _ := b.AllocCache(4*bs*w, dt)
		all := make([]int32, 4*bs)
		for i := range all {
			all[i] = int32(i)
		}
		b.ScatterRows(ks, kc, all, w) // the float32 caches, slots not written by RoPEStore included
		b.ScatterRows(vs, vc, all, w)
		b.ScatterRows(kh, kc, all, w)
		b.ScatterRows(vh, vc, all, w)
		b.RoPEStore(b.Alloc(m*w), kh, vh, qkvb, pos, slots, heads, hd, 10000)
		got, want := b.Alloc(w), b.Alloc(w)
		b.PagedAttention(got, q, kh, vh, seqs, heads, hd, bs)
		b.PagedAttention(want, q, ks, vs, seqs, heads, hd, bs)
		bitwise(t, "RoPEStore into a "+dt.String()+" cache", download(b, got, w), download(b, want, w))
		for _, c := range []kernels.Buffer{kh, vh, ks, vs} {
			b.Free(c)
		}
	}
}
