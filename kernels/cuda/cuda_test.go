//go:build cuda

package cuda

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/internal/golden"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu"
	"github.com/pancap-serve/pancap/kernels/dtype"
	"github.com/pancap-serve/pancap/kernels/kernelstest"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/llava"
	"github.com/pancap-serve/pancap/sample"
)

// The model sizes the KV cache from the GPU's free memory.
var _ model.DeviceMemory = (*Backend)(nil)

// Tolerances of the cuBLAS path against the float32 CPU backend, relative
// to the output's largest magnitude, per weight dtype, for a dot product of
// k terms (times sqrt(k)). bf16/fp16 GEMMs round the activations to the
// weight's dtype (8 and 11 significant bits), so their bounds follow the
// unit roundoff: 2⁻⁹ and 2⁻¹² with headroom.
var cublasTol = map[kernels.DType]float64{
	kernels.F32:  kernelstest.TolF32,
	kernels.F16:  1e-3,
	kernels.BF16: 8e-3,
}

// newBackend opens device 0; a missing cuBLAS skips the cuBLAS tests but
// not the reference ones.
func newBackend(t testing.TB, g GEMM) *Backend {
	t.Helper()
	b, err := New(Options{GEMM: g})
	if errors.Is(err, ErrNoCuBLAS) {
		t.Skipf("cuBLAS tests skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	t.Logf("backend %s", b.Name())
	return b
}

// TestConformanceReference runs the shared suite with the reference GEMM,
// at the suite's own (float32) tolerances and bitwise batch invariance.
func TestConformanceReference(t *testing.T) {
	kernelstest.Run(t, newBackend(t, GEMMReference))
}

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// encode stores v in dtype dt (bf16 by truncation, fp16 by round-to-nearest
// through the CPU backend's reader being the judge of the value).
func encode(dt kernels.DType, v []float32) []byte {
	raw := make([]byte, len(v)*dt.Size())
	for i, x := range v {
		switch dt {
		case kernels.F32:
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		case kernels.BF16:
			binary.LittleEndian.PutUint16(raw[2*i:], uint16(math.Float32bits(x)>>16))
		case kernels.F16:
			binary.LittleEndian.PutUint16(raw[2*i:], f16(x))
		}
	}
	return raw
}

// f16 converts |x| < 65504 to half precision, rounding toward zero.
func f16(x float32) uint16 {
	bits := math.Float32bits(x)
	sign := uint16(bits>>16) & 0x8000
	exp := int(bits>>23&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	return sign | uint16(exp)<<10 | uint16(bits>>13&0x3ff)
}

// pair holds the same weight on the GPU and on the CPU reference.
type pair struct{ g, c kernels.Weight }

func loadPair(t *testing.T, g, c kernels.Backend, dt kernels.DType, shape []int, v []float32) pair {
	t.Helper()
	raw := encode(dt, v)
	gw, err := g.LoadWeight(dt, shape, raw)
	if err != nil {
		t.Fatal(err)
	}
	cw, err := c.LoadWeight(dt, shape, raw)
	if err != nil {
		t.Fatal(err)
	}
	return pair{gw, cw}
}

func upload(b kernels.Backend, v []float32) kernels.Buffer {
	x := b.Alloc(len(v))
	b.Write(x, 0, v)
	return x
}

func download(b kernels.Backend, x kernels.Buffer, n int) []float32 {
	v := make([]float32, n)
	b.Read(v, x, 0)
	return v
}

// closeTo fails when |got − want| exceeds tol · max(1, max|want|).
func closeTo(t *testing.T, name string, got, want []float32, tol float64) {
	t.Helper()
	scale := 1.0
	for _, w := range want {
		scale = max(scale, math.Abs(float64(w)))
	}
	for i := range want {
		if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= tol*scale) {
			t.Fatalf("%s: [%d] = %g, want %g (|Δ| %g > %g)", name, i, got[i], want[i], d, tol*scale)
		}
	}
}

// TestCuBLASMatMul checks cublasGemmEx for each dtype, with and without
// bias, on awkward and model-sized shapes, against the CPU backend.
func TestCuBLASMatMul(t *testing.T) {
	g := newBackend(t, GEMMCuBLAS)
	c := cpu.New(1)
	defer c.Close()
	r := rand.New(rand.NewPCG(1, 2))
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.F16} {
		for _, sh := range [][3]int{{1, 1, 1}, {1, 5, 7}, {3, 33, 13}, {7, 130, 70}, {32, 512, 1024}, {65, 256, 640}} {
			m, n, k := sh[0], sh[1], sh[2]
			w := loadPair(t, g, c, dt, []int{n, k}, randVec(r, n*k))
			bias := loadPair(t, g, c, dt, []int{n}, randVec(r, n))
			x := randVec(r, m*k)
			for _, bw := range []*pair{nil, &bias} {
				var gb, cb kernels.Weight
				if bw != nil {
					gb, cb = bw.g, bw.c
				}
				gout, cout := g.Alloc(m*n), c.Alloc(m*n)
				g.MatMul(gout, upload(g, x), w.g, gb, m)
				c.MatMul(cout, upload(c, x), w.c, cb, m)
				closeTo(t, dt.String()+" cublas matmul", download(g, gout, m*n), download(c, cout, m*n),
					cublasTol[dt]*math.Sqrt(float64(k)))
			}
		}
	}
}

// TestCuBLASAttention checks the strided-batched dense attention (the ViT
// path) against the CPU backend at a CLIP-like shape.
func TestCuBLASAttention(t *testing.T) {
	g := newBackend(t, GEMMCuBLAS)
	c := cpu.New(1)
	defer c.Close()
	r := rand.New(rand.NewPCG(3, 4))
	for _, sh := range [][4]int{{2, 5, 3, 6}, {2, 50, 4, 64}} {
		seqs, seqLen, heads, hd := sh[0], sh[1], sh[2], sh[3]
		n := seqs * seqLen * heads * hd
		q, k, v := randVec(r, n), randVec(r, n), randVec(r, n)
		gout, cout := g.Alloc(n), c.Alloc(n)
		g.Attention(gout, upload(g, q), upload(g, k), upload(g, v), seqs, seqLen, heads, hd)
		c.Attention(cout, upload(c, q), upload(c, k), upload(c, v), seqs, seqLen, heads, hd)
		closeTo(t, "cublas attention", download(g, gout, n), download(c, cout, n), kernelstest.TolTranscendental)
	}
}

// TestPagedAttentionLong covers what the suite's short sequences do not,
// for each cache type (float32, bfloat16, float16) against the CPU backend
// with the same cache, on the production geometry (head dimension 128,
// block size 16: the specialised kernels, tensor cores for the 16-bit
// caches) and a generic one (head dimension 40, block size 5), with partitions sized for 1 and 132 multiprocessors:
// contexts of several partitions, a prefill chunk straddling partition
// boundaries, a row exactly at a block boundary, bitwise equality of each
// sequence alone and in the batch, and of a decode row and the same row
// inside a prefill.
func TestPagedAttentionLong(t *testing.T) {
	g := newBackend(t, GEMMReference)
	c := cpu.New(1)
	defer c.Close()
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.F16} {
		for _, geo := range []struct{ heads, hd, bs int }{{2, 128, 16}, {3, 40, 5}} {
			for _, sms := range []int{1, 132} {
				t.Run(fmt.Sprintf("%v/hd=%d,bs=%d/sms=%d", dt, geo.hd, geo.bs, sms), func(t *testing.T) {
					defer func(n int) { g.sms = n }(g.sms)
					g.sms = sms
					pagedAttentionLong(t, g, c, dt, geo.heads, geo.hd, geo.bs)
				})
			}
		}
	}
}

func pagedAttentionLong(t *testing.T, g *Backend, c kernels.Backend, dt kernels.DType, heads, hd, bs int) {
	r := rand.New(rand.NewPCG(5, 6))
	width := heads * hd
	nBlocks := 1100/bs + 4
	cache := func(b kernels.Backend) kernels.Buffer {
		t.Helper()
		x, err := b.AllocCache(nBlocks*bs*width, dt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Free(x) })
		return x
	}
	gk, gv, ck, cv := cache(g), cache(g), cache(c), cache(c)
	rows := make([]int32, nBlocks*bs)
	for i := range rows {
		rows[i] = int32(i)
	}
	for _, pair := range [][2]kernels.Buffer{{gk, ck}, {gv, cv}} {
		src := randVec(r, nBlocks*bs*width)
		storeChecked(t, g, pair[0], src, rows, width)
		c.ScatterRows(pair[1], upload(c, src), rows, width)
	}
	perm := r.Perm(nBlocks)
	next := 0
	blocksFor := func(n int) []int32 {
		var b []int32
		for i := 0; i*bs < n; i++ {
			b = append(b, int32(perm[next]))
			next++
		}
		return b
	}
	// A decode step at position 700, a 40-row prefill chunk at 240…279, a
	// fresh 20-row prefill, a decode row at a block's last position.
	seqs := []kernels.Seq{
		{Row: 0, Rows: 1, Pos: 700, Blocks: blocksFor(701)},
		{Row: 1, Rows: 40, Pos: 240, Blocks: blocksFor(280)},
		{Row: 41, Rows: 20, Pos: 0, Blocks: blocksFor(20)},
		{Row: 61, Rows: 1, Pos: 2*bs - 1, Blocks: blocksFor(2 * bs)},
	}
	n := 62
	q := randVec(r, n*width)
	gout, cout := g.Alloc(n*width), c.Alloc(n*width)
	g.PagedAttention(gout, upload(g, q), gk, gv, seqs, heads, hd, bs)
	c.PagedAttention(cout, upload(c, q), ck, cv, seqs, heads, hd, bs)
	got := download(g, gout, n*width)
	closeTo(t, "paged attention", got, download(c, cout, n*width), kernelstest.TolTranscendental)
	for i, s := range seqs {
		lo, hi := s.Row*width, (s.Row+s.Rows)*width
		one := s
		one.Row = 0
		alone := g.Alloc(hi - lo)
		g.PagedAttention(alone, upload(g, q[lo:hi]), gk, gv, []kernels.Seq{one}, heads, hd, bs)
		for j, x := range download(g, alone, hi-lo) {
			if x != got[lo+j] {
				t.Fatalf("seq %d: batched %g, alone %g at %d", i, got[lo+j], x, j)
			}
		}
	}
	// Rows 263 and 279 of the prefill chunk as decode steps.
	for _, pos := range []int{263, 279} {
		row := 1 + pos - 240
		one := g.Alloc(width)
		g.PagedAttention(one, upload(g, q[row*width:(row+1)*width]), gk, gv,
			[]kernels.Seq{{Rows: 1, Pos: pos, Blocks: seqs[1].Blocks}}, heads, hd, bs)
		for j, x := range download(g, one, width) {
			if x != got[row*width+j] {
				t.Fatalf("decode at %d: %g, the prefill's row %g at %d", pos, x, got[row*width+j], j)
			}
		}
	}
}

// storeChecked scatters src into the cache c by rows and checks a 16-bit
// cache's rounding against kernels/dtype (to nearest, ties to even) on its
// first elements, read back raw (rows must start with row 0).
func storeChecked(t *testing.T, b *Backend, c kernels.Buffer, src []float32, rows []int32, width int) {
	t.Helper()
	b.ScatterRows(c, upload(b, src), rows, width)
	x := c.(*buffer)
	if x.dt == 0 {
		return
	}
	raw := make([]uint16, 64)
	b.enter()
	err := cu.MemcpyDtoH(unsafe.Pointer(&raw[0]), x.p, int64(2*len(raw)))
	b.leave()
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range raw {
		want := dtype.F32ToBF16(src[i])
		if x.dt == kernels.F16 {
			want = dtype.F32ToF16(src[i])
		}
		if h != want {
			t.Fatalf("%v cache element %d: %#04x, want %#04x (from %g)", x.dt, i, h, want, src[i])
		}
	}
}

// TestAttentionPTXVectorLoads checks the committed PTX: every attention
// kernel specialised for a head dimension and block size reads keys and
// values with 16-byte loads.
func TestAttentionPTXVectorLoads(t *testing.T) {
	for _, k := range attnKeys() {
		if k.hd == 0 {
			continue
		}
		_, body, ok := strings.Cut(kernelsPTX, ".entry "+k.name()+"(")
		if !ok {
			t.Fatalf("no kernel %s in ptx/kernels.ptx", k.name())
		}
		body, _, _ = strings.Cut(body, ".entry ")
		if n := strings.Count(body, "ld.global.nc.v4.") + strings.Count(body, "ld.global.v4."); n == 0 {
			t.Errorf("%s: no 16-byte global load in its body", k.name())
		}
	}
}

// TestFusedAndExtraOps checks AddRMSNorm against Add + RMSNorm, Softmax
// against the host, and greedy Pick (no draws) including ties.
func TestFusedAndExtraOps(t *testing.T) {
	g := newBackend(t, GEMMReference)
	r := rand.New(rand.NewPCG(7, 8))
	m, width := 3, 300
	x, d := randVec(r, m*width), randVec(r, m*width)
	w, err := g.LoadWeight(kernels.BF16, []int{width}, encode(kernels.BF16, randVec(r, width)))
	if err != nil {
		t.Fatal(err)
	}
	xa, outA := upload(g, x), g.Alloc(m*width)
	g.AddRMSNorm(outA, xa, upload(g, d), w, m, 1e-5)
	xb, outB := upload(g, x), g.Alloc(m*width)
	g.Add(xb, xb, upload(g, d), m*width)
	g.RMSNorm(outB, xb, w, m, 1e-5)
	closeTo(t, "AddRMSNorm residual", download(g, xa, m*width), download(g, xb, m*width), 0)
	closeTo(t, "AddRMSNorm", download(g, outA, m*width), download(g, outB, m*width), kernelstest.TolF32)

	s := upload(g, x)
	g.Softmax(s, m, width)
	got := download(g, s, m*width)
	for i := 0; i < m; i++ {
		row := x[i*width : (i+1)*width]
		mx := slices.Max(row)
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v - mx))
		}
		want := make([]float32, width)
		for j, v := range row {
			want[j] = float32(math.Exp(float64(v-mx)) / sum)
		}
		closeTo(t, "Softmax", got[i*width:(i+1)*width], want, kernelstest.TolTranscendental)
	}

	logits := randVec(r, 2*1000)
	logits[417] = 50
	logits[1000+999], logits[1000+3] = 60, 60 // a tie: the lowest index wins
	ids := make([]int32, 2)
	g.Pick(ids, upload(g, logits), 1000, nil)
	if ids[0] != 417 || ids[1] != 3 {
		t.Fatalf("greedy Pick = %v, want [417 3]", ids)
	}
}

// TestPickSamples checks the device's sampling against sample.Picker, the
// host's rule, on rows of LLaMA's vocabulary size: temperature, top-k,
// top-p, both, and greedy rows among them. The two sum weights in different
// orders (and the host's exponential is a vector approximation), so a draw
// within 1e-5 of a boundary may fall on either side: a token that differs
// must be the host's pick at a number that close. A row's token must not
// depend on the other rows.
func TestPickSamples(t *testing.T) {
	g := newBackend(t, GEMMReference)
	r := rand.New(rand.NewPCG(9, 10))
	const width, m = 32000, 6
	kinds := []sample.Params{{Temperature: 0.7}, {Temperature: 1.3, TopK: 50}, {Temperature: 1, TopP: 0.9},
		{Temperature: 0.8, TopK: 40, TopP: 0.6}, {}, {Temperature: 1, TopP: 1e-6}}
	var host sample.Picker
	same, near := 0, 0
	for trial := range 4 {
		x := randVec(r, m*width)
		for i := range x {
			x[i] *= 4
		}
		x[trial] = float32(math.Inf(-1))
		x[width+trial] = float32(math.NaN())
		draws := make([]kernels.Draw, m)
		for i := range draws {
			p := kinds[(i+trial)%len(kinds)]
			draws[i] = kernels.Draw{Temperature: p.Temperature, TopK: int32(p.TopK), TopP: p.TopP, U: r.Float64()}
		}
		xs := upload(g, x)
		ids := make([]int32, m)
		g.Pick(ids, xs, width, draws)
		for i, d := range draws {
			switch exact, ok := hostAgrees(&host, x[i*width:(i+1)*width], d, ids[i]); {
			case exact:
				same++
			case ok:
				near++
			default:
				t.Errorf("trial %d row %d %+v: device %d", trial, i, d, ids[i])
			}
		}
		alone := make([]int32, 1)
		last := g.Alloc(width)
		g.Copy(last, 0, xs, (m-1)*width, width)
		g.Pick(alone, last, width, draws[m-1:])
		if alone[0] != ids[m-1] {
			t.Errorf("trial %d: the last row alone picks %d, in the batch %d", trial, alone[0], ids[m-1])
		}
	}
	t.Logf("%d picks equal to the host's, %d within 1e-5 of a boundary", same, near)
}

// hostAgrees reports whether id is sample.Picker's pick of row at d
// (exact), or its pick at a number within 1e-5 of d.U (ok): the device sums
// the weights in another order, and the host's exponential is a vector
// approximation, so a draw that close to a boundary may fall either way.
func hostAgrees(host *sample.Picker, row []float32, d kernels.Draw, id int32) (exact, ok bool) {
	p := sample.Params{Temperature: d.Temperature, TopK: int(d.TopK), TopP: d.TopP}
	if host.Pick(row, p, d.U) == id {
		return true, true
	}
	return false, host.Pick(row, p, max(d.U-1e-5, 0)) == id || host.Pick(row, p, min(d.U+1e-5, 1-1e-12)) == id
}

// TestNoCuBLASError checks that a missing library is a clear error naming
// what was tried.
func TestNoCuBLASError(t *testing.T) {
	_, err := openCuBLAS([]string{"libpancap-no-such-cublas.so.99"})
	if !errors.Is(err, ErrNoCuBLAS) || !strings.Contains(err.Error(), "libpancap-no-such-cublas.so.99") {
		t.Fatalf("openCuBLAS error = %v", err)
	}
}

// repoRoot is the repository root: PANCAP_REPO_ROOT (set by the packaged
// GPU test binary's runner) or the source tree.
func repoRoot() string {
	if r := os.Getenv("PANCAP_REPO_ROOT"); r != "" {
		return r
	}
	return filepath.Join("..", "..")
}

// TestGoldenForward runs every golden case (testdata/golden, made by the
// Hugging Face reference) through the whole model on the GPU, with both
// GEMM paths: image features, prompt logits, and greedy tokens (exact for
// the reference GEMM; the cuBLAS path rounds activations to bf16/fp16, so
// only its logits are held to a tolerance). With -short the reference-GEMM
// runs of the 336-pixel cases are left out (about 40 s each on the
// emulated driver).
func TestGoldenForward(t *testing.T) {
	cases := golden.Cases(t, repoRoot())
	for _, g := range []GEMM{GEMMReference, GEMMCuBLAS} {
		for _, c := range cases {
			if testing.Short() && g == GEMMReference && strings.Contains(c.Checkpoint, "clip336") {
				continue
			}
			name := map[GEMM]string{GEMMReference: "ref", GEMMCuBLAS: "cublas"}[g] + "/" + c.Name()
			t.Run(name, func(t *testing.T) { goldenForward(t, g, c) })
		}
	}
}

func goldenForward(t *testing.T, g GEMM, c golden.Case) {
	b := newBackend(t, g)
	tol := 1e-4
	if c.DType != "float32" {
		tol = 1e-2
		if g == GEMMCuBLAS {
			tol = 3e-2
		}
	}
	opts := model.Options{KVBlocks: 96, KVBlockSize: 8, Backend: b}
	if c.LoRA != "" {
		opts.LoRA = filepath.Join(repoRoot(), c.LoRA)
	}
	m, _, err := model.Open(context.Background(), filepath.Join(repoRoot(), c.Checkpoint, c.Layouts[0]), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	feats, err := m.EncodeImages([]engine.Image{{Pixels: c.F32(t, "pixel_values.f32")}})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.RelL2(m.ReadFeatures(feats[0]), c.F32(t, "image_features.f32")); e > tol {
		t.Errorf("image features rel L2 %.3g > %g", e, tol)
	}
	seq := m.NewSequence()
	logits, err := seq.Feed(llava.ExpandImageTokens(c.InputIDs, c.ImageTokens), feats[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != c.Vocab {
		t.Fatalf("%d logits, want %d", len(logits), c.Vocab)
	}
	e := golden.RelL2(logits, c.F32(t, "logits.f32"))
	t.Logf("logits rel L2 %.3g", e)
	if e > tol {
		t.Errorf("logits rel L2 %.3g > %g", e, tol)
	}
	if g != GEMMReference {
		return
	}
	var got []int32
	for range c.GreedyIDs {
		next := golden.Argmax(logits)
		got = append(got, next)
		if logits, err = seq.Feed([]int32{next}, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, c.GreedyIDs) {
		t.Errorf("greedy ids\n got %v\nwant %v", got, c.GreedyIDs)
	}
}
