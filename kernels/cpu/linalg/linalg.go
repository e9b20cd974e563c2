// Package linalg holds the CPU's dense linear-algebra primitives: matrix
// products against weights stored as fp32, bf16 or fp16, with fp32
// accumulation, a persistent worker pool (Parallel) they run on, and the
// vector attention kernel (Attend) over a paged KV cache.
//
// Batch invariance: every output element out[i][j] is reduced in one fixed
// order that depends only on k, never on m, n, the other rows, the split of
// the columns over workers or the blocking, so a sequence's result never
// depends on the batch it runs in. The order is the one of the active
// kernel (Kernel): on x86-64 with AVX2+FMA+F16C, eight fma lanes over
// p ≡ l (mod 8), a fixed summation tree and a sequential tail (see
// gemm_avx2.c); elsewhere the portable Go kernel's sequential sum. bf16 and
// fp16 weights are widened exactly to fp32: activations stay fp32 (no
// rounding of x to bf16), which keeps parity with an fp32 reference.
//
// Parallelism: MatMulF32/BF16/F16 split the columns over the package's
// persistent workers, which every parallel op of the CPU backend shares
// (Run, Parallel, Workers); idle workers spin briefly before they park, so
// that the ops of a step follow each other without thread wake-ups. Give a
// product to them in one call; a caller that splits the columns itself gets
// the same bits, but its concurrent calls find the workers busy and run on
// the caller alone. GemmF32, Attend and vec.Dot/Axpy always run on the
// caller, for use inside a Task. The workers live as long as the process:
// goleak users ignore
// "github.com/pancap-serve/pancap/kernels/cpu/linalg.(*parker).wait".
package linalg

import (
	"fmt"
	"unsafe"
)

// wtype is a weight element type; the values are gemm.h's PC_F32, PC_BF16
// and PC_F16.
type wtype int

const (
	wF32 wtype = iota
	wBF16
	wF16
)

// gemmShape is the shape and the row strides of a product
// out[i*ldo+j] = Σ_p x[i*ldx+p]·w[j*ldw+p], i < m, j < n, p < k.
type gemmShape struct {
	m, n, k       int
	ldo, ldx, ldw int
}

// fastKernel is a set of vector kernels. gemm computes columns [j0, j1) of
// a product with w of type wt; scratch (nil or scratchLen(k) floats) lets it
// widen or copy the weights once per block for large m without changing any
// result bit. attend computes an attention call (already checked) with
// attendScratch(heads, headDim, most positions a row sees) floats of scratch.
// siluMul and quickGELU are the activations of SiLUMul and QuickGELU,
// expShift the exponentials of ExpShift.
type fastKernel struct {
	name          string
	gemm          func(wt wtype, g gemmShape, out, x *float32, w unsafe.Pointer, j0, j1 int, scratch []float32)
	scratchLen    func(k int) int
	attend        func(a Attn, scratch []float32)
	attendScratch func(heads, headDim, nmax int) int
	siluMul       func(out, a, c []float32)             // SiLUMul, lengths checked
	quickGELU     func(out, a []float32)                // QuickGELU, lengths checked
	expShift      func(out, a []float32, s float32)     // ExpShift, lengths checked
	roundF16      func(dst []uint16, src []float32) int // RoundF16 up to a NaN's vector or the tail
	roundBF16     func(dst []uint16, src []float32) int // RoundBF16 likewise
}

// fast is the vector kernel selected at start-up for this CPU, or nil
// where only the portable kernel exists.
var fast *fastKernel

// Kernel names the matrix-product kernel in use: "avx2" (x86-64 with
// AVX2, FMA and F16C, through cgo) or "go" (the portable kernel).
func Kernel() string {
	if fast != nil {
		return fast.name
	}
	return "go"
}

// colUnit is the column granule of the parallel split.
const colUnit = 24

// serialFlops is the work below which a product runs on the caller alone.
const serialFlops = 1 << 16

// gemmTask is a matrix product split over column units.
type gemmTask struct {
	out, x  []float32
	w       weights
	g       gemmShape
	scratch [][]float32 // per worker, grown to fast.scratchLen(k)
}

func (t *gemmTask) Run(wk, lo, hi int) {
	t.cols(wk, lo*colUnit, min(hi*colUnit, t.g.n))
}

// cols computes output columns [j0, j1) on worker wk (-1: no scratch).
func (t *gemmTask) cols(wk, j0, j1 int) {
	if fast == nil {
		matMulGo(t.out, t.x, t.w, t.g, j0, j1)
		return
	}
	var s []float32
	if t.g.m > 16 && wk >= 0 {
		need := fast.scratchLen(t.g.k)
		if len(t.scratch[wk]) < need {
			t.scratch[wk] = make([]float32, need)
		}
		s = t.scratch[wk]
	}
	var wp unsafe.Pointer
	if t.w.wt == wF32 {
		wp = unsafe.Pointer(unsafe.SliceData(t.w.f32))
	} else {
		wp = unsafe.Pointer(unsafe.SliceData(t.w.u16))
	}
	fast.gemm(t.w.wt, t.g, unsafe.SliceData(t.out), unsafe.SliceData(t.x), wp, j0, j1, s)
}

// check panics unless the slices hold the strided shape g, and reports
// whether the product is trivial (no output, or k = 0: zeros), having done
// it.
func (g *gemmShape) check(out, x []float32, wlen int) (done bool) {
	last := func(rows, ld, width int) int { return max(rows-1, 0)*ld + width }
	if g.m < 0 || g.n < 0 || g.k < 0 || g.ldo < g.n || g.ldx < g.k || g.ldw < g.k ||
		g.m > 0 && (len(out) < last(g.m, g.ldo, g.n) || len(x) < last(g.m, g.ldx, g.k)) ||
		g.n > 0 && wlen < last(g.n, g.ldw, g.k) {
		panic(fmt.Sprintf("linalg: product m=%d n=%d k=%d (strides out %d, x %d, w %d) with len(out)=%d len(x)=%d len(w)=%d",
			g.m, g.n, g.k, g.ldo, g.ldx, g.ldw, len(out), len(x), wlen))
	}
	if g.k == 0 {
		for i := range g.m {
			clear(out[i*g.ldo : i*g.ldo+g.n])
		}
	}
	return g.m == 0 || g.n == 0 || g.k == 0
}

// matMul runs a product with output row stride ldo parallel over the
// pool's workers by column units, or on the caller alone when it is small
// or the workers are busy.
func matMul(out []float32, ldo int, x []float32, w weights, wlen, m, n, k int) {
	g := gemmShape{m: m, n: n, k: k, ldo: ldo, ldx: k, ldw: k}
	if g.check(out, x, wlen) {
		return
	}
	p := getPool()
	units := (n + colUnit - 1) / colUnit
	if 2*m*n*k < serialFlops || units == 1 || !p.acquire() {
		t := gemmTask{out: out, x: x, w: w, g: g}
		t.cols(-1, 0, n)
		return
	}
	defer p.mu.Unlock()
	p.mm = gemmTask{out: out, x: x, w: w, g: g, scratch: p.mm.scratch}
	p.split(&p.mm, units, p.workers)
	p.mm.out, p.mm.x, p.mm.w = nil, nil, weights{}
}

// MatMulF32 computes out[m×n] = x[m×k] · w[n×k]ᵀ, parallel over the
// package's workers (see Parallel; called while they are busy, it runs on
// the caller alone, with the same result).
func MatMulF32(out, x, w []float32, m, n, k int) { MatMulF32To(out, n, x, w, m, n, k) }

// MatMulBF16 computes out[m×n] = x[m×k] · w[n×k]ᵀ with w in bfloat16,
// widened exactly to fp32 (x is not rounded), like MatMulF32.
func MatMulBF16(out, x []float32, w []uint16, m, n, k int) { MatMulBF16To(out, n, x, w, m, n, k) }

// MatMulF16 computes out[m×n] = x[m×k] · w[n×k]ᵀ with w in IEEE float16,
// widened exactly to fp32, like MatMulF32.
func MatMulF16(out, x []float32, w []uint16, m, n, k int) { MatMulF16To(out, n, x, w, m, n, k) }

// MatMulF32To is MatMulF32 into rows of stride ldo ≥ n: out[i*ldo+j] for
// j < n, the columns of a wider product whose other weight rows live
// elsewhere (every element bit for bit what MatMulF32 gives).
func MatMulF32To(out []float32, ldo int, x, w []float32, m, n, k int) {
	matMul(out, ldo, x, weights{wt: wF32, f32: w}, len(w), m, n, k)
}

// MatMulBF16To is MatMulBF16 into rows of stride ldo, like MatMulF32To.
func MatMulBF16To(out []float32, ldo int, x []float32, w []uint16, m, n, k int) {
	matMul(out, ldo, x, weights{wt: wBF16, u16: w}, len(w), m, n, k)
}

// MatMulF16To is MatMulF16 into rows of stride ldo, like MatMulF32To.
func MatMulF16To(out []float32, ldo int, x []float32, w []uint16, m, n, k int) {
	matMul(out, ldo, x, weights{wt: wF16, u16: w}, len(w), m, n, k)
}

// GemmF32 computes out[i*ldo+j] = Σ_p x[i*ldx+p]·w[j*ldw+p] for i < m,
// j < n, p < k: MatMulF32 over rows that lie inside larger matrices (one
// head's keys in a KV-cache block, say), with every element bit for bit
// what MatMulF32 (and vec.Dot) give for the same row, column and k. It
// runs on the calling goroutine, for use inside Parallel or the caller's
// own workers, and allocates nothing.
func GemmF32(out []float32, ldo int, x []float32, ldx int, w []float32, ldw int, m, n, k int) {
	t := gemmTask{out: out, x: x, w: weights{wt: wF32, f32: w},
		g: gemmShape{m: m, n: n, k: k, ldo: ldo, ldx: ldx, ldw: ldw}}
	if t.g.check(out, x, len(w)) {
		return
	}
	t.cols(-1, 0, n)
}
