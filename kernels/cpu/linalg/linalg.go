// Package linalg holds the CPU's dense linear-algebra primitives: matrix
// products against weights stored as fp32, bf16 or fp16, with fp32
// accumulation, and a persistent worker pool (Parallel) they run on.
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
package linalg

import (
	"fmt"
	"math"
	"unsafe"
)

// BF16ToF32 widens a bfloat16 bit pattern.
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F16ToF32 widens an IEEE half-precision bit pattern.
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		for man&0x400 == 0 {
			man <<= 1
			exp--
		}
		exp++
		man &= 0x3ff
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// wtype is a weight element type.
type wtype int

const (
	wF32 wtype = iota
	wBF16
	wF16
)

// fastKernel computes columns [j0, j1) of out[m×n] = x[m×k] · w[n×k]ᵀ with
// w of type wt; scratch (nil or scratchLen(k) floats) enables cache
// blocking for large m without changing any result bit. It is nil where
// only the portable kernel exists.
type fastKernel struct {
	name       string
	gemm       func(wt wtype, out, x *float32, w unsafe.Pointer, m, n, k, j0, j1 int, scratch []float32)
	scratchLen func(k int) int
}

// fast is the vector kernel selected at start-up for this CPU, or nil.
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
	wt      wtype
	out, x  *float32
	w       unsafe.Pointer
	m, n, k int
	scratch [][]float32 // per worker, grown to scratchLen(k)
}

func (t *gemmTask) run(wk, lo, hi int) {
	var s []float32
	if t.m > 16 && t.scratch != nil {
		need := fast.scratchLen(t.k)
		if len(t.scratch[wk]) < need {
			t.scratch[wk] = make([]float32, need)
		}
		s = t.scratch[wk]
	}
	fast.gemm(t.wt, t.out, t.x, t.w, t.m, t.n, t.k, lo*colUnit, min(hi*colUnit, t.n), s)
}

// prologue panics on slices too short for the shape, and reports whether
// the product is trivial (no output, or k = 0: zeros), having done it.
func prologue(out, x []float32, wlen, m, n, k int) (done bool) {
	if m < 0 || n < 0 || k < 0 || len(out) < m*n || len(x) < m*k || wlen < n*k {
		panic(fmt.Sprintf("linalg: matmul m=%d n=%d k=%d with len(out)=%d len(x)=%d len(w)=%d",
			m, n, k, len(out), len(x), wlen))
	}
	if k == 0 {
		clear(out[:m*n])
	}
	return m == 0 || n == 0 || k == 0
}

// matMul runs a product on the fast kernel, parallel over the pool's
// workers by column units, or on the caller alone when the workers are busy.
func matMul(wt wtype, out, x []float32, w unsafe.Pointer, m, n, k int) {
	op, xp := unsafe.SliceData(out), unsafe.SliceData(x)
	p := getPool()
	units := (n + colUnit - 1) / colUnit
	if 2*m*n*k < serialFlops || units == 1 || !p.acquire() {
		fast.gemm(wt, op, xp, w, m, n, k, 0, n, nil)
		return
	}
	defer p.mu.Unlock()
	p.mm = gemmTask{wt: wt, out: op, x: xp, w: w, m: m, n: n, k: k, scratch: p.mm.scratch}
	p.split(&p.mm, units)
	p.mm.out, p.mm.x, p.mm.w = nil, nil, nil
}

// MatMulF32 computes out[m×n] = x[m×k] · w[n×k]ᵀ, parallel over the
// package's workers (see Parallel; called while they are busy, it runs on
// the caller alone, with the same result).
func MatMulF32(out, x, w []float32, m, n, k int) {
	if prologue(out, x, len(w), m, n, k) {
		return
	}
	if fast == nil {
		matMulGo(out, x, m, n, k, widenF32(w, k))
		return
	}
	matMul(wF32, out, x, unsafe.Pointer(unsafe.SliceData(w)), m, n, k)
}

// MatMulBF16 computes out[m×n] = x[m×k] · w[n×k]ᵀ with w in bfloat16,
// widened exactly to fp32 (x is not rounded), like MatMulF32.
func MatMulBF16(out, x []float32, w []uint16, m, n, k int) {
	if prologue(out, x, len(w), m, n, k) {
		return
	}
	if fast == nil {
		matMulGo(out, x, m, n, k, widenU16(w, k, BF16ToF32))
		return
	}
	matMul(wBF16, out, x, unsafe.Pointer(unsafe.SliceData(w)), m, n, k)
}

// MatMulF16 computes out[m×n] = x[m×k] · w[n×k]ᵀ with w in IEEE float16,
// widened exactly to fp32, like MatMulF32.
func MatMulF16(out, x []float32, w []uint16, m, n, k int) {
	if prologue(out, x, len(w), m, n, k) {
		return
	}
	if fast == nil {
		matMulGo(out, x, m, n, k, widenU16(w, k, F16ToF32))
		return
	}
	matMul(wF16, out, x, unsafe.Pointer(unsafe.SliceData(w)), m, n, k)
}
