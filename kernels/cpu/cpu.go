// Package cpu is the pure-Go kernels.Backend: the executable specification
// of every op, parallel over the machine's cores on linalg's persistent
// workers. GEMMs go through kernels/cpu/linalg. Weights are kept in their stored
// dtype (aliasing the caller's bytes, e.g. a memory-mapped file) and widened
// on the fly.
package cpu

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu/linalg"
	"github.com/pancap-serve/pancap/kernels/dtype"
)

// Backend is the CPU implementation of kernels.Backend. It is not safe for
// concurrent use.
type Backend struct {
	workers int // the most pieces an op is cut into
	attn    attentionTask
	ew      elementwiseTask
	rows    rowTask
}

var _ kernels.Backend = (*Backend)(nil)

// New returns a backend that cuts its ops into at most workers pieces, run
// on linalg's shared workers: at most linalg.Workers() of them, which is
// also what 0 means.
func New(workers int) *Backend {
	if workers <= 0 {
		workers = linalg.Workers()
	}
	return &Backend{workers: min(workers, linalg.Workers())}
}

// parallel runs t over [0, n) on linalg's workers in pieces of at least
// grain items, at most b.workers of them. The pieces depend only on n, grain
// and the worker count, never on other arguments of an op, which keeps
// per-row results batch invariant.
func (b *Backend) parallel(t linalg.Task, n, grain int) {
	linalg.Run(t, n, min((n+grain-1)/max(grain, 1), b.workers))
}

// Name returns "cpu".
func (b *Backend) Name() string { return "cpu" }

// Close releases nothing: the workers are the process's (linalg's), shared
// by every backend.
func (b *Backend) Close() {}

// buffer is a CPU activation buffer (d), or a KV-cache buffer stored as
// float32 (d) or as 16-bit patterns of type dt (h).
type buffer struct {
	d  []float32
	h  []uint16
	dt kernels.DType
}

// Len is the number of elements.
func (x *buffer) Len() int { return len(x.d) + len(x.h) }

// data is a float32 buffer's storage; a 16-bit cache has none.
func data(x kernels.Buffer) []float32 {
	b := x.(*buffer)
	if b.h != nil {
		panic("cpu: a " + b.dt.String() + " KV cache used as a float32 buffer")
	}
	return b.d
}

// weight is a CPU weight: f32 holds float32 data, u16 bf16/fp16 bit
// patterns; a ConcatRows weight holds its parts instead (and no data).
type weight struct {
	dt    kernels.DType
	shape []int
	f32   []float32
	u16   []uint16
	n     int       // element count
	parts []*weight // ConcatRows: the row blocks, in order
}

// Shape is the weight's shape.
func (w *weight) Shape() []int { return w.shape }

// DType is the storage type.
func (w *weight) DType() kernels.DType { return w.dt }

func wt(w kernels.Weight) *weight  { return w.(*weight) }
func (w *weight) at(i int) float32 { return widen(w.dt, w.f32, w.u16, i) }

func widen(dt kernels.DType, f []float32, u []uint16, i int) float32 {
	switch dt {
	case kernels.BF16:
		return dtype.BF16ToF32(u[i])
	case kernels.F16:
		return dtype.F16ToF32(u[i])
	}
	return f[i]
}

// Alloc returns a zeroed buffer of n elements.
func (b *Backend) Alloc(n int) kernels.Buffer { return &buffer{d: make([]float32, n)} }

// AllocCache returns a zeroed KV-cache buffer of n elements of dt (F32,
// BF16 or F16).
func (b *Backend) AllocCache(n int, dt kernels.DType) (kernels.Buffer, error) {
	switch dt {
	case kernels.F32:
		return &buffer{d: make([]float32, n), dt: dt}, nil
	case kernels.BF16, kernels.F16:
		return &buffer{h: make([]uint16, n), dt: dt}, nil
	}
	return nil, fmt.Errorf("%w: %v", kernels.ErrCacheType, dt)
}

// Free drops the buffer's storage.
func (b *Backend) Free(x kernels.Buffer) {
	bb := x.(*buffer)
	bb.d, bb.h = nil, nil
}

// Write copies src into dst[off:].
func (b *Backend) Write(dst kernels.Buffer, off int, src []float32) {
	copy(data(dst)[off:off+len(src)], src)
}

// Read copies src[off:off+len(dst)] into dst.
func (b *Backend) Read(dst []float32, src kernels.Buffer, off int) {
	copy(dst, data(src)[off:off+len(dst)])
}

// Copy copies n elements from src[srcOff:] to dst[dstOff:].
func (b *Backend) Copy(dst kernels.Buffer, dstOff int, src kernels.Buffer, srcOff, n int) {
	copy(data(dst)[dstOff:dstOff+n], data(src)[srcOff:srcOff+n])
}

// LoadWeight wraps data without copying it when it is suitably aligned.
// The host must be little-endian (amd64, arm64).
func (b *Backend) LoadWeight(dt kernels.DType, shape []int, raw []byte) (kernels.Weight, error) {
	n, err := kernels.CheckWeight(dt, shape, raw)
	if err != nil {
		return nil, err
	}
	w := &weight{dt: dt, shape: append([]int(nil), shape...), n: n}
	p := unsafe.Pointer(unsafe.SliceData(raw))
	if uintptr(p)%uintptr(dt.Size()) != 0 {
		raw = append([]byte(nil), raw...) // misaligned: copy once
		p = unsafe.Pointer(unsafe.SliceData(raw))
	}
	if dt == kernels.F32 {
		w.f32 = unsafe.Slice((*float32)(p), n)
	} else {
		w.u16 = unsafe.Slice((*uint16)(p), n)
	}
	return w, nil
}

// ConcatRows returns a weight made of ws's rows without copying them: the
// parts keep aliasing their bytes (a memory-mapped file stays the only
// copy), and MatMul runs each part into its columns of the product.
func (b *Backend) ConcatRows(ws []kernels.Weight) (kernels.Weight, error) {
	if len(ws) == 0 {
		return nil, fmt.Errorf("%w: ConcatRows of no weights", kernels.ErrWeight)
	}
	first := wt(ws[0])
	c := &weight{dt: first.dt, shape: []int{0, first.n / first.shape[0]}}
	for _, w := range ws {
		p := wt(w)
		if p.parts != nil || p.dt != c.dt || len(p.shape) != 2 || p.shape[1] != c.shape[1] {
			return nil, fmt.Errorf("%w: ConcatRows of %v %v onto %v [_ %d]", kernels.ErrWeight, p.dt, p.shape, c.dt, c.shape[1])
		}
		c.parts = append(c.parts, p)
		c.shape[0] += p.shape[0]
		c.n += p.n
	}
	return c, nil
}

// MatMul computes out[m × n] = x[m × k] · w[n × k]ᵀ (+ bias). The product
// runs in linalg, which parallelises it over its own workers by columns and
// keeps every row's reduction order independent of m and n, so a
// ConcatRows weight's parts, each run into its own columns, give the bits
// of the separate products.
func (b *Backend) MatMul(out, x kernels.Buffer, w, bias kernels.Weight, m int) {
	ww := wt(w)
	n, k := ww.shape[0], ww.n/ww.shape[0]
	o, xs := data(out)[:m*n], data(x)[:m*k]
	if ww.parts == nil {
		matMulTo(o, n, xs, ww, m)
	}
	col := 0
	for _, p := range ww.parts {
		matMulTo(o[col:], n, xs, p, m)
		col += p.shape[0]
	}
	if bias == nil {
		return
	}
	bw := wt(bias)
	for i := 0; i < m; i++ {
		row := o[i*n : (i+1)*n]
		for j := range row {
			row[j] += bw.at(j)
		}
	}
}

// matMulTo computes the product of x[m × k] with the rows of w into the
// first w.shape[0] columns of out's rows of stride ldo.
func matMulTo(out []float32, ldo int, x []float32, w *weight, m int) {
	n, k := w.shape[0], w.n/w.shape[0]
	switch w.dt {
	case kernels.F32:
		linalg.MatMulF32To(out, ldo, x, w.f32, m, n, k)
	case kernels.BF16:
		linalg.MatMulBF16To(out, ldo, x, w.u16, m, n, k)
	case kernels.F16:
		linalg.MatMulF16To(out, ldo, x, w.u16, m, n, k)
	}
}

// Embed gathers table rows for non-negative ids.
func (b *Backend) Embed(out kernels.Buffer, table kernels.Weight, ids []int32) {
	w, o := wt(table), data(out)
	width := w.n / w.shape[0]
	for i, id := range ids {
		if id < 0 {
			continue
		}
		row := o[i*width : (i+1)*width]
		base := int(id) * width
		for j := range row {
			row[j] = w.at(base + j)
		}
	}
}

// CopyWeight copies w into dst[off:].
func (b *Backend) CopyWeight(dst kernels.Buffer, off int, w kernels.Weight) {
	ww, d := wt(w), data(dst)[off:]
	for i := 0; i < ww.n; i++ {
		d[i] = ww.at(i)
	}
}

// AddWeight adds w to dst[off:].
func (b *Backend) AddWeight(dst kernels.Buffer, off int, w kernels.Weight) {
	ww, d := wt(w), data(dst)[off:]
	for i := 0; i < ww.n; i++ {
		d[i] += ww.at(i)
	}
}

// ScatterRows copies row i of src to row rows[i] of dst, rounding to a
// 16-bit cache's type.
func (b *Backend) ScatterRows(dst, src kernels.Buffer, rows []int32, width int) {
	s, db := data(src), dst.(*buffer)
	for i, r := range rows {
		db.storeRow(int(r), s[i*width:(i+1)*width])
	}
}

// storeRow writes v to row r (of width len(v)) of a KV cache, rounded to a
// 16-bit cache's type (to nearest, ties to even): the one place cache rows
// are written.
func (x *buffer) storeRow(r int, v []float32) {
	w := len(v)
	switch x.dt {
	case kernels.BF16:
		linalg.RoundBF16(x.h[r*w:(r+1)*w], v)
	case kernels.F16:
		linalg.RoundF16(x.h[r*w:(r+1)*w], v)
	default:
		copy(x.d[r*w:(r+1)*w], v)
	}
}

// GatherRows copies row rows[i] of src to row i of dst.
func (b *Backend) GatherRows(dst, src kernels.Buffer, rows []int32, width int) {
	d, s := data(dst), data(src)
	for i, r := range rows {
		copy(d[i*width:(i+1)*width], s[int(r)*width:(int(r)+1)*width])
	}
}

// rowOp selects the per-row op of rowTask.
type rowOp int

const (
	opRMSNorm rowOp = iota
	opAddRMSNorm
	opLayerNorm
	opRoPEStore
	opSiLUMul
)

// rowTask runs a per-row op over [lo, hi) rows.
type rowTask struct {
	op          rowOp
	out, x, add []float32
	w, bias     *weight
	width       int
	eps         float32
	pos, slots  []int32
	heads, hd   int
	invFreq     []float32 // [hd/2]
	kc, vc      *buffer
	rot         []float32 // RoPEStore: the rotated key of one row per worker
}

const rowGrain = 4

func (t *rowTask) Run(wk, lo, hi int) {
	for i := lo; i < hi; i++ {
		switch t.op {
		case opAddRMSNorm:
			x, d := t.x[i*t.width:(i+1)*t.width], t.add[i*t.width:(i+1)*t.width]
			for j := range x {
				x[j] += d[j]
			}
			t.rmsNorm(i)
		case opRMSNorm:
			t.rmsNorm(i)
		case opLayerNorm:
			t.layerNorm(i)
		case opRoPEStore:
			t.ropeStore(wk, i)
		case opSiLUMul:
			t.siluMul(i)
		}
	}
}

// rmsNorm follows LLaMA: x · rsqrt(mean(x²) + eps), then · w.
func (t *rowTask) rmsNorm(i int) {
	x, o := t.x[i*t.width:(i+1)*t.width], t.out[i*t.width:(i+1)*t.width]
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	r := float32(1 / math.Sqrt(ss/float64(t.width)+float64(t.eps)))
	for j, v := range x {
		o[j] = t.w.at(j) * (v * r)
	}
}

func (t *rowTask) layerNorm(i int) {
	x, o := t.x[i*t.width:(i+1)*t.width], t.out[i*t.width:(i+1)*t.width]
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	mean := s / float64(t.width)
	var vs float64
	for _, v := range x {
		d := float64(v) - mean
		vs += d * d
	}
	r := 1 / math.Sqrt(vs/float64(t.width)+float64(t.eps))
	for j, v := range x {
		o[j] = float32((float64(v)-mean)*r)*t.w.at(j) + t.bias.at(j)
	}
}

// ropeStore rotates the query and key of row i of qkv (into out and the
// worker's scratch) and stores the key and the value in the caches.
func (t *rowTask) ropeStore(wk, i int) {
	w := t.heads * t.hd
	row := t.x[i*3*w : (i+1)*3*w]
	k := t.rot[wk*w : (wk+1)*w]
	copy(t.out[i*w:(i+1)*w], row[:w])
	copy(k, row[w:2*w])
	t.rotate(t.out[i*w:(i+1)*w], t.pos[i])
	t.rotate(k, t.pos[i])
	t.kc.storeRow(int(t.slots[i]), k)
	t.vc.storeRow(int(t.slots[i]), row[2*w:])
}

// rotate applies RoPE at position p to x[heads·hd] in place.
func (t *rowTask) rotate(x []float32, p int32) {
	half := t.hd / 2
	for d := 0; d < half; d++ {
		c, s := kernels.RoPECosSin(p, t.invFreq[d])
		for h := 0; h < t.heads; h++ {
			xh := x[h*t.hd : (h+1)*t.hd]
			x1, x2 := xh[d], xh[d+half]
			xh[d] = x1*c - x2*s
			xh[d+half] = x2*c + x1*s
		}
	}
}

// siluMul computes row i of SiLUMul.
func (t *rowTask) siluMul(i int) {
	o, g := t.out[i*t.width:(i+1)*t.width], t.x[2*i*t.width:(2*i+1)*t.width]
	u := t.x[(2*i+1)*t.width : (2*i+2)*t.width]
	if linalg.SiLUMul(o, g, u) {
		return
	}
	for j, v := range g {
		o[j] = v / (1 + expf(-v)) * u[j]
	}
}

// RMSNorm normalises m rows of width len(w).
func (b *Backend) RMSNorm(out, x kernels.Buffer, w kernels.Weight, m int, eps float32) {
	b.rowOp(rowTask{op: opRMSNorm, out: data(out), x: data(x), w: wt(w), width: wt(w).n, eps: eps}, m)
}

// AddRMSNorm adds delta to x, then normalises x's m rows into out.
func (b *Backend) AddRMSNorm(out, x, delta kernels.Buffer, w kernels.Weight, m int, eps float32) {
	b.rowOp(rowTask{op: opAddRMSNorm, out: data(out), x: data(x), add: data(delta), w: wt(w), width: wt(w).n, eps: eps}, m)
}

// LayerNorm normalises m rows of width len(w).
func (b *Backend) LayerNorm(out, x kernels.Buffer, w, bias kernels.Weight, m int, eps float32) {
	b.rowOp(rowTask{op: opLayerNorm, out: data(out), x: data(x), w: wt(w), bias: wt(bias), width: wt(w).n, eps: eps}, m)
}

// RoPEStore rotates the queries and keys of qkv's rows and writes the
// queries to q, the keys and values to their cache slots.
func (b *Backend) RoPEStore(q, kc, vc, qkv kernels.Buffer, pos, slots []int32, heads, headDim int, theta float32) {
	w := heads * headDim
	t := rowTask{op: opRoPEStore, out: data(q), x: data(qkv), pos: pos, slots: slots, heads: heads, hd: headDim,
		kc: kc.(*buffer), vc: vc.(*buffer)}
	t.invFreq = kernels.RoPEInvFreq(b.rows.invFreq[:0], headDim, theta)
	if need := b.workers * w; len(b.rows.rot) < need {
		b.rows.rot = make([]float32, need)
	}
	t.rot = b.rows.rot
	b.rowOp(t, len(pos))
}

// SiLUMul computes silu(gate) · up for m rows of gateUp into out.
func (b *Backend) SiLUMul(out, gateUp kernels.Buffer, m, width int) {
	b.rowOp(rowTask{op: opSiLUMul, out: data(out)[:m*width], x: data(gateUp)[:2*m*width], width: width}, m)
}

// rowOp runs t over m rows, keeping the task's reusable scratch.
func (b *Backend) rowOp(t rowTask, m int) {
	if t.invFreq == nil {
		t.invFreq = b.rows.invFreq
	}
	if t.rot == nil {
		t.rot = b.rows.rot
	}
	b.rows = t
	b.parallel(&b.rows, m, rowGrain)
}

// ewOp selects the elementwise op of elementwiseTask.
type ewOp int

const (
	opAdd ewOp = iota
	opGELU
	opQuickGELU
)

type elementwiseTask struct {
	op        ewOp
	out, a, c []float32
}

const ewGrain = 1 << 14

func (t *elementwiseTask) Run(_, lo, hi int) {
	o, a := t.out[lo:hi], t.a[lo:hi]
	switch t.op {
	case opAdd:
		c := t.c[lo:hi]
		for i := range o {
			o[i] = a[i] + c[i]
		}
	case opGELU:
		for i, v := range a {
			o[i] = float32(0.5 * float64(v) * (1 + math.Erf(float64(v)/math.Sqrt2)))
		}
	case opQuickGELU:
		if linalg.QuickGELU(o, a) {
			return
		}
		for i, v := range a {
			o[i] = v / (1 + expf(-1.702*v))
		}
	}
}

func (b *Backend) elementwise(op ewOp, out, a, c []float32, n int) {
	t := &b.ew
	*t = elementwiseTask{op: op, out: out, a: a, c: c}
	b.parallel(t, n, ewGrain)
}

// Add computes out = a + c elementwise over n elements.
func (b *Backend) Add(out, a, c kernels.Buffer, n int) {
	b.elementwise(opAdd, data(out), data(a), data(c), n)
}

// GELU applies the exact GELU in place.
func (b *Backend) GELU(x kernels.Buffer, n int) { b.elementwise(opGELU, data(x), data(x), nil, n) }

// QuickGELU applies x·sigmoid(1.702x) in place.
func (b *Backend) QuickGELU(x kernels.Buffer, n int) {
	b.elementwise(opQuickGELU, data(x), data(x), nil, n)
}
