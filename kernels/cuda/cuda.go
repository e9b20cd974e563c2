//go:build cuda

package cuda

/*
#include <cuda.h>
#include <stdint.h>

#include <stdlib.h>

static CUresult pc_alloc_host(void **p, size_t n) { return cuMemAllocHost(p, n); }
static CUresult pc_free_host(void *p) { return cuMemFreeHost(p); }

// The module and its launches go through these rather than gorgonia.org/cu,
// whose Launch mallocs and frees two C arrays per call.
static CUresult pc_module_load(uintptr_t *m, const void *image) {
	CUmodule mod = 0;
	CUresult r = cuModuleLoadData(&mod, image);
	*m = (uintptr_t)mod;
	return r;
}
static CUresult pc_module_unload(uintptr_t m) { return cuModuleUnload((CUmodule)m); }
static CUresult pc_function(uintptr_t *f, uintptr_t m, const char *name) {
	CUfunction fn = 0;
	CUresult r = cuModuleGetFunction(&fn, (CUmodule)m, name);
	*f = (uintptr_t)fn;
	return r;
}

// pc_params allocates the persistent argument array of n 8-byte values and
// the pointer array cuLaunchKernel takes (ptrs[i] = &vals[i]).
static void **pc_params(int n) {
	void **p = malloc(n * (sizeof(void *) + sizeof(unsigned long long)));
	if (!p) return 0;
	unsigned long long *v = (unsigned long long *)(p + n);
	for (int i = 0; i < n; i++) p[i] = &v[i];
	return p;
}
static CUresult pc_launch(uintptr_t f, unsigned gx, unsigned gy, unsigned bx, unsigned by, uintptr_t s,
                          void **params) {
	return cuLaunchKernel((CUfunction)f, gx, gy, 1, bx, by, 1, 0, (CUstream)s, params, 0);
}
*/
import "C"

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"sync/atomic"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/pancap-serve/pancap/kernels"
)

//go:embed ptx/kernels.ptx
var kernelsPTX string

// ErrCUDA reports a failed CUDA driver call or kernel launch. Backend
// methods without an error result panic with an error wrapping ErrCUDA
// (and the driver's result, e.g. errors.Is(err, cu.OutOfMemory)); the
// batcher's recover turns that into failed requests. After a sticky error
// (an illegal address, a failed launch: the context cannot run work any
// more) the error also wraps kernels.ErrDeviceLost, and every later call
// fails with it at once (see Lost).
var ErrCUDA = errors.New("cuda: driver call failed")

// GEMM selects how MatMul runs.
type GEMM int

const (
	// GEMMCuBLAS uses cublasGemmEx: bf16/fp16 weights multiply activations
	// rounded to the weight's dtype (float32 accumulation); float32 weights
	// use a float32 GEMM. Fast; not bitwise batch-invariant.
	GEMMCuBLAS GEMM = iota
	// GEMMReference uses the backend's own tiled kernel: activations stay
	// float32, each output is accumulated in k order, so rows are bitwise
	// independent of the batch. No cuBLAS needed; slow.
	GEMMReference
)

// Options configures New.
type Options struct {
	Device int  // CUDA device ordinal
	GEMM   GEMM // MatMul implementation
}

// Launch configuration.
const (
	rowThreads  = 256     // threads per row for row-wise kernels (multiple of 32)
	pickThreads = 512     // threads per row of pick (multiple of 32, at most 1024)
	ewThreads   = 256     // threads per block for elementwise kernels
	gemmTile    = 16      // gemm_ref tile (GT in kernels.cu)
	stageMin    = 1 << 20 // initial pinned staging arena, bytes
	stageWrite  = 1 << 18 // Writes up to this many elements go through staging
)

// Backend is the CUDA implementation of kernels.Backend. It is not safe for
// concurrent use: one goroutine owns it, as the interface requires. Every
// method locks its goroutine to its OS thread for the call and makes the
// backend's context current, so callers need no thread discipline.
type Backend struct {
	dev    cu.Device
	ctx    cu.CUContext
	stream cu.Stream
	mod    C.uintptr_t // CUmodule of the embedded PTX
	fn     functions
	blas   *cublas // nil with GEMMReference
	name   string
	sms    int // multiprocessors: attention partitions are sized to fill them
	closed bool
	allocs map[cu.DevicePtr]struct{} // live buffers and weights, freed by Close

	params unsafe.Pointer // C memory: maxArgs pointers, then the maxArgs values they point at

	stage   staging
	argOut  scratch // Pick's ids
	attnBuf scratch // attention partials or dense scores
	plan    attnPlan
	rope    ropeTable
	host    []float32 // host-side table assembly, reused

	// fresh is the 16-bit copy of a GEMM input that the last op wrote
	// beside its float32 output; begin moves it to prev, so only the op
	// right after the producer (its MatMul) uses it.
	fresh, prev halfCopy

	lost atomic.Pointer[error] // set once a sticky error has broken the context

	root *Backend // the backend whose device, memory and lost state this one shares: itself, or the owner of a side view
	side *Backend // the side view (stream.go), once made
}

// function is a kernel of the module (a CUfunction).
type function C.uintptr_t

// functions are the module's kernels.
type functions struct {
	gemmRef, toHalf, biasRows, embed, weightTo, moveRows, rmsnorm, layernorm, ropeStore,
	elementwise, siluMul, softmax, pick, storeRows, attnCombine function
	attn map[attnKey]function // the attention kernels (attnKeys)
}

var _ kernels.Backend = (*Backend)(nil)

// New creates a backend on opts.Device: it retains the device's primary
// context (the one the CUDA runtime, and so cuBLAS, uses), creates a stream,
// loads the embedded PTX (JIT-compiled by the driver for the device) and,
// for GEMMCuBLAS, opens cuBLAS.
func New(opts Options) (*Backend, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("%w: cuDeviceGetCount: %v", ErrCUDA, err)
	}
	if opts.Device < 0 || opts.Device >= n {
		return nil, fmt.Errorf("%w: device %d of %d", ErrCUDA, opts.Device, n)
	}
	dev, err := cu.GetDevice(opts.Device)
	if err != nil {
		return nil, fmt.Errorf("%w: cuDeviceGet(%d): %v", ErrCUDA, opts.Device, err)
	}
	b := &Backend{dev: dev, allocs: map[cu.DevicePtr]struct{}{}}
	b.root = b
	if b.ctx, err = b.dev.RetainPrimaryCtx(); err != nil {
		return nil, fmt.Errorf("%w: retain primary context: %v", ErrCUDA, err)
	}
	if err := cu.SetCurrentContext(b.ctx); err != nil {
		b.dev.ReleasePrimaryCtx()
		return nil, fmt.Errorf("%w: set context: %v", ErrCUDA, err)
	}
	if err := b.init(opts); err != nil {
		b.release()
		return nil, err
	}
	return b, nil
}

func (b *Backend) init(opts Options) error {
	name, _ := b.dev.Name()
	major, minor, err := b.dev.ComputeCapability()
	if err != nil {
		return fmt.Errorf("%w: compute capability: %v", ErrCUDA, err)
	}
	if major < 8 {
		return fmt.Errorf("%w: %s is sm_%d%d; the kernels need compute capability 8.0+", ErrCUDA, name, major, minor)
	}
	if b.stream, err = cu.MakeStream(cu.DefaultStream); err != nil {
		return fmt.Errorf("%w: create stream: %v", ErrCUDA, err)
	}
	if b.params = newParams(); b.params == nil {
		return fmt.Errorf("%w: no memory for the launch parameters", ErrCUDA)
	}
	ptx := C.CString(kernelsPTX)
	r := C.pc_module_load(&b.mod, unsafe.Pointer(ptx))
	C.free(unsafe.Pointer(ptx))
	if err := cuError(r); err != nil {
		return fmt.Errorf("%w: load PTX (driver too old for PTX ISA 7.8 / CUDA 11.8?): %w", ErrCUDA, err)
	}
	for _, k := range []struct {
		f    *function
		name string
	}{
		{&b.fn.gemmRef, "gemm_ref"}, {&b.fn.toHalf, "to_half"}, {&b.fn.biasRows, "bias_rows"},
		{&b.fn.embed, "embed"}, {&b.fn.weightTo, "weight_to"}, {&b.fn.moveRows, "move_rows"},
		{&b.fn.rmsnorm, "rmsnorm"}, {&b.fn.layernorm, "layernorm"}, {&b.fn.ropeStore, "rope_store"},
		{&b.fn.elementwise, "elementwise"}, {&b.fn.siluMul, "silu_mul"}, {&b.fn.softmax, "softmax"},
		{&b.fn.pick, "pick"}, {&b.fn.storeRows, "store_rows"}, {&b.fn.attnCombine, "attn_combine"},
	} {
		if *k.f, err = b.function(k.name); err != nil {
			return err
		}
	}
	b.fn.attn = map[attnKey]function{}
	for _, k := range attnKeys() {
		if b.fn.attn[k], err = b.function(k.name()); err != nil {
			return err
		}
	}
	if b.sms, err = b.dev.Attribute(cu.MultiprocessorCount); err != nil || b.sms < 1 {
		return fmt.Errorf("%w: multiprocessor count %d: %v", ErrCUDA, b.sms, err)
	}
	gemm := "gemm_ref"
	if opts.GEMM == GEMMCuBLAS {
		if b.blas, err = newCuBLAS(b.stream); err != nil {
			return err
		}
		gemm = fmt.Sprintf("%s v%d", b.blas.lib, b.blas.version)
	}
	b.name = fmt.Sprintf("cuda:%d (%s, sm_%d%d, %s)", opts.Device, name, major, minor, gemm)
	return nil
}

// function looks up the module's kernel name.
func (b *Backend) function(name string) (function, error) {
	var f function
	cs := C.CString(name)
	r := C.pc_function((*C.uintptr_t)(&f), b.mod, cs)
	C.free(unsafe.Pointer(cs))
	if err := cuError(r); err != nil {
		return 0, fmt.Errorf("%w: kernel %s: %w", ErrCUDA, name, err)
	}
	return f, nil
}

// release frees everything New acquired, in reverse order; zero handles are
// skipped so it also cleans up after a failed init.
func (b *Backend) release() {
	if b.side != nil {
		b.side.releaseView()
	}
	if b.stream != (cu.Stream{}) {
		b.stream.Synchronize()
	}
	if b.blas != nil {
		b.blas.close()
	}
	for p := range b.allocs {
		cu.MemFree(p)
	}
	clear(b.allocs)
	b.argOut.free()
	b.attnBuf.free()
	b.rope.free()
	b.stage.free()
	if b.mod != 0 {
		C.pc_module_unload(b.mod)
		b.mod = 0
	}
	freeParams(b.params)
	b.params = nil
	if b.stream != (cu.Stream{}) {
		b.stream.Destroy()
	}
	b.dev.ReleasePrimaryCtx()
}

// enter binds the calling goroutine to its thread and the thread to the
// backend's context, and panics with begin's error; leave undoes the
// binding.
func (b *Backend) enter() {
	if err := b.begin(); err != nil {
		panic(err)
	}
}

// begin is enter for methods with an error result: a lost backend returns
// its error without touching the driver; on error nothing is left bound.
func (b *Backend) begin() error {
	if err := b.Lost(); err != nil {
		return err
	}
	b.prev, b.fresh = b.fresh, halfCopy{}
	runtime.LockOSThread()
	if err := cu.SetCurrentContext(b.ctx); err != nil {
		runtime.UnlockOSThread()
		return b.fail("set context", err)
	}
	return nil
}

func (b *Backend) leave() { runtime.UnlockOSThread() }

// must panics with the error of a failed call (see fail).
func (b *Backend) must(op string, err error) {
	if err != nil {
		panic(b.fail(op, err))
	}
}

// stickyResults are the driver results after which the context cannot run
// work any more: every later call fails too, and only a new process (a new
// context) recovers.
var stickyResults = []error{
	cu.IllegalAddress, cu.LaunchFailed, cu.LaunchTimeout, cu.Assert, cu.HardwareStackError,
	cu.IllegalInstruction, cu.MisalignedAddress, cu.InvalidAddressSpace, cu.InvalidPc,
	cu.EccUncorrectable, cu.Unknown, cu.Deinitialized,
}

func isSticky(err error) bool {
	for _, s := range stickyResults {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// fail wraps the error of op in ErrCUDA. When the error is sticky, or a
// context synchronisation right after it reports one (a cuBLAS failure
// names no driver result), the backend is lost: the error wraps
// kernels.ErrDeviceLost too and is kept for Lost and every later call.
func (b *Backend) fail(op string, err error) error {
	if lost := b.Lost(); lost != nil {
		return lost
	}
	if !isSticky(err) {
		if perr := cu.Synchronize(); isSticky(perr) {
			err = fmt.Errorf("%v, then the context reports %w", err, perr)
		}
	}
	if !isSticky(err) {
		return fmt.Errorf("%w: %s: %w", ErrCUDA, op, err)
	}
	lost := fmt.Errorf("%w: %w: %s: %w (the device's context is unusable: restart the process)", kernels.ErrDeviceLost, ErrCUDA, op, err)
	b.root.lost.CompareAndSwap(nil, &lost)
	return *b.root.lost.Load()
}

// Lost returns nil while the backend works and, once a sticky CUDA error has
// broken its context, that error (wrapping kernels.ErrDeviceLost and
// ErrCUDA): nothing can run on this backend any more. Safe for concurrent
// use (a health check may poll it while the owner runs work).
func (b *Backend) Lost() error {
	if p := b.root.lost.Load(); p != nil {
		return *p
	}
	return nil
}

// Name describes the device, e.g. "cuda:0 (NVIDIA H100 80GB HBM3, sm_90,
// libcublas.so.12 v120304)".
func (b *Backend) Name() string { return b.name }

// Close waits for outstanding work and releases the backend's resources,
// buffers and weights included (they live in the backend's context), and
// its side view's. Later calls, and calls on the side view, do nothing. A
// lost backend is released too (the driver calls fail fast on a broken
// context).
func (b *Backend) Close() {
	if b.closed || b.root != b {
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cu.SetCurrentContext(b.ctx)
	b.release()
	b.closed = true
}

// Synchronize waits until all queued work has finished.
func (b *Backend) Synchronize() {
	b.enter()
	defer b.leave()
	b.must("synchronize", b.stream.Synchronize())
	b.stage.rewind()
}

// ---------------------------------------------------------------------------
// Memory.

// buffer is a device float32 activation buffer, or a KV cache of n
// elements of type dt (BF16, F16; 0 for float32 storage). A float32 buffer
// that a MatMul with 16-bit weights has read gets a shadow of n 16-bit
// values (dtype halfDT): the input cuBLAS multiplies, written by the
// buffer's producer where it can (RMSNorm, AddRMSNorm, SiLUMul), else by
// to_half.
type buffer struct {
	p      cu.DevicePtr
	n      int
	dt     kernels.DType
	half   cu.DevicePtr
	halfDT kernels.DType
}

// halfCopy names the 16-bit copy of x[:n] in x's shadow.
type halfCopy struct {
	x *buffer
	n int
}

func (x *buffer) Len() int { return x.n }

// cacheType is the buffer's element type as a KV cache.
func (x *buffer) cacheType() kernels.DType {
	if x.dt == 0 {
		return kernels.F32
	}
	return x.dt
}

// kvCaches returns a key and a value cache of op, which must be of one
// type (float32 or 16-bit).
func kvCaches(op string, kc, vc kernels.Buffer) (*buffer, *buffer) {
	kb, vb := kc.(*buffer), vc.(*buffer)
	if kb.cacheType() != vb.cacheType() {
		panic(fmt.Sprintf("cuda: %s with a %v key cache and a %v value cache", op, kb.cacheType(), vb.cacheType()))
	}
	return kb, vb
}

// buf is a float32 buffer; a 16-bit KV cache passed where one is needed
// panics.
func buf(x kernels.Buffer) *buffer {
	b := x.(*buffer)
	if b.dt != 0 {
		panic("cuda: a " + b.dt.String() + " KV cache used as a float32 buffer")
	}
	return b
}

// at is the device address of element i.
func (x *buffer) at(i int) uint64 { return uint64(x.p) + 4*uint64(i) }

// weight is a device weight in its stored dtype.
type weight struct {
	p     cu.DevicePtr
	dt    kernels.DType
	shape []int
	n     int
}

func (w *weight) Shape() []int         { return w.shape }
func (w *weight) DType() kernels.DType { return w.dt }

func wt(w kernels.Weight) *weight { return w.(*weight) }

// Alloc returns a zeroed device buffer of n float32 elements; it panics
// when the device memory is exhausted (an error wrapping cu.OutOfMemory).
func (b *Backend) Alloc(n int) kernels.Buffer {
	x, err := b.alloc(n, 0)
	if err != nil {
		panic(err)
	}
	return x
}

// alloc returns n zeroed elements of type dt (0: a float32 buffer).
func (b *Backend) alloc(n int, dt kernels.DType) (*buffer, error) {
	if err := b.begin(); err != nil {
		return nil, err
	}
	defer b.leave()
	size := 4 * int64(max(n, 1))
	if dt != 0 {
		size = (int64(max(n, 1))*int64(dt.Size()) + 3) &^ 3 // whole words for the memset
	}
	p, err := cu.MemAlloc(size)
	if err != nil {
		return nil, b.fail(fmt.Sprintf("cuMemAlloc(%d bytes)", size), err)
	}
	if err := cu.MemsetD32Async(p, 0, size/4, b.stream); err != nil {
		cu.MemFree(p)
		return nil, b.fail("cuMemsetD32", err)
	}
	b.allocs[p] = struct{}{}
	return &buffer{p: p, n: n, dt: dt}, nil
}

// AllocCache returns a zeroed KV-cache buffer of n elements of dt: F32 (a
// float32 buffer), BF16 or F16 (ScatterRows rounds into it, PagedAttention
// widens it exactly; it cannot be used as a float32 buffer). An error wraps
// kernels.ErrCacheType for another dtype, or ErrCUDA and cu.OutOfMemory
// when the device cannot hold it.
func (b *Backend) AllocCache(n int, dt kernels.DType) (kernels.Buffer, error) {
	if dt != kernels.F32 && dt != kernels.BF16 && dt != kernels.F16 {
		return nil, fmt.Errorf("%w: %v on CUDA", kernels.ErrCacheType, dt)
	}
	if dt == kernels.F32 {
		dt = 0
	}
	x, err := b.alloc(n, dt)
	if err != nil {
		return nil, err // not a nil *buffer in an interface
	}
	return x, nil
}

// FreeMemory is the device memory free now, in bytes (cuMemGetInfo): the
// model sizes its KV cache from it (model.DeviceMemory).
func (b *Backend) FreeMemory() (int64, error) {
	b.enter()
	defer b.leave()
	free, _, err := cu.MemInfo()
	return free, err
}

// Free releases a buffer or KV cache after the work queued so far has
// finished. On a lost backend it does nothing: Close releases the whole
// context, so a model can still close after its device is lost.
func (b *Backend) Free(x kernels.Buffer) {
	if b.Lost() != nil {
		return
	}
	b.enter()
	defer b.leave()
	bb := x.(*buffer)
	if bb.p == 0 {
		return
	}
	b.must("synchronize", b.stream.Synchronize())
	for _, p := range []cu.DevicePtr{bb.p, bb.half} {
		if p != 0 {
			b.must("cuMemFree", cu.MemFree(p))
			delete(b.allocs, p)
		}
	}
	*bb = buffer{}
}

// Write copies src into dst[off:], ordered after the queued work. It
// returns once src may be reused: small writes, and every write of a side
// view (which must not wait), are copied into pinned staging memory and
// sent asynchronously; large ones synchronously.
func (b *Backend) Write(dst kernels.Buffer, off int, src []float32) {
	if len(src) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	d := buf(dst)
	checkRange("Write", off, len(src), d.n)
	dp := cu.DevicePtr(d.at(off))
	if len(src) <= stageWrite || b.root != b {
		// Through pinned memory: queued, no wait for the stream to drain.
		b.stage.flush(b) // what was staged before keeps its order
		h, _ := b.stage.reserve(b, 4*len(src))
		copy(unsafe.Slice((*float32)(h), len(src)), src)
		b.must("cuMemcpyHtoDAsync", cu.MemcpyHtoDAsync(dp, h, int64(4*len(src)), b.stream))
		b.stage.chunks[b.stage.cur].sent = b.stage.chunks[b.stage.cur].used // sent, to dp
		return
	}
	// The synchronous copy is ordered after the stream's earlier work (our
	// stream is a blocking one, so the legacy stream waits for it).
	b.must("cuMemcpyHtoD", cu.MemcpyHtoD(dp, unsafe.Pointer(unsafe.SliceData(src)), int64(4*len(src))))
}

// Read waits for the queued work and copies src[off:off+len(dst)] into dst.
func (b *Backend) Read(dst []float32, src kernels.Buffer, off int) {
	if len(dst) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	s := buf(src)
	checkRange("Read", off, len(dst), s.n)
	b.must("cuMemcpyDtoH", cu.MemcpyDtoHAsync(unsafe.Pointer(unsafe.SliceData(dst)), cu.DevicePtr(s.at(off)), int64(4*len(dst)), b.stream))
	b.must("synchronize", b.stream.Synchronize())
	b.stage.rewind() // every staged upload has been consumed
}

// Copy copies n elements from src[srcOff:] to dst[dstOff:] on the device.
func (b *Backend) Copy(dst kernels.Buffer, dstOff int, src kernels.Buffer, srcOff, n int) {
	if n == 0 {
		return
	}
	b.enter()
	defer b.leave()
	d, s := buf(dst), buf(src)
	checkRange("Copy", dstOff, n, d.n)
	checkRange("Copy", srcOff, n, s.n)
	b.must("cuMemcpyDtoDAsync", cu.MemcpyDtoDAsync(cu.DevicePtr(d.at(dstOff)), cu.DevicePtr(s.at(srcOff)), int64(4*n), b.stream))
}

func checkRange(op string, off, n, size int) {
	if off < 0 || n < 0 || off+n > size {
		panic(fmt.Sprintf("cuda: %s [%d, %d) out of a buffer of %d", op, off, off+n, size))
	}
}

// LoadWeight uploads data to the device (the backend keeps no reference to
// data afterwards).
func (b *Backend) LoadWeight(dt kernels.DType, shape []int, data []byte) (kernels.Weight, error) {
	n, err := kernels.CheckWeight(dt, shape, data)
	if err != nil {
		return nil, err
	}
	if err := b.begin(); err != nil {
		return nil, err
	}
	defer b.leave()
	p, err := cu.MemAlloc(int64(len(data)))
	if err != nil {
		return nil, b.fail(fmt.Sprintf("weight %v %v: cuMemAlloc(%d bytes)", dt, shape, len(data)), err)
	}
	if err := cu.MemcpyHtoD(p, unsafe.Pointer(unsafe.SliceData(data)), int64(len(data))); err != nil {
		cu.MemFree(p)
		return nil, b.fail(fmt.Sprintf("weight %v %v: cuMemcpyHtoD", dt, shape), err)
	}
	b.allocs[p] = struct{}{}
	return &weight{p: p, dt: dt, shape: append([]int(nil), shape...), n: n}, nil
}

// FreeWeight releases a weight's device memory (after queued work).
func (b *Backend) FreeWeight(w kernels.Weight) {
	b.enter()
	defer b.leave()
	ww := wt(w)
	if ww.p == 0 {
		return
	}
	b.must("synchronize", b.stream.Synchronize())
	b.must("cuMemFree", cu.MemFree(ww.p))
	delete(b.allocs, ww.p)
	ww.p = 0
}

// ConcatRows copies the parts into one allocation, in order, and frees
// them.
func (b *Backend) ConcatRows(ws []kernels.Weight) (kernels.Weight, error) {
	if len(ws) == 0 {
		return nil, fmt.Errorf("%w: ConcatRows of no weights", kernels.ErrWeight)
	}
	first := wt(ws[0])
	k := first.n / first.shape[0]
	c := &weight{dt: first.dt, shape: []int{0, k}}
	for _, w := range ws {
		p := wt(w)
		if p.dt != c.dt || len(p.shape) != 2 || p.shape[1] != k {
			return nil, fmt.Errorf("%w: ConcatRows of %v %v onto %v [_ %d]", kernels.ErrWeight, p.dt, p.shape, c.dt, k)
		}
		c.shape[0] += p.shape[0]
		c.n += p.n
	}
	if err := b.begin(); err != nil {
		return nil, err
	}
	defer b.leave()
	size := int64(c.n * c.dt.Size())
	var err error
	if c.p, err = cu.MemAlloc(size); err != nil {
		return nil, b.fail(fmt.Sprintf("weight %v %v: cuMemAlloc(%d bytes)", c.dt, c.shape, size), err)
	}
	b.allocs[c.p] = struct{}{}
	off := int64(0)
	for _, w := range ws {
		p := wt(w)
		n := int64(p.n * p.dt.Size())
		if err := cu.MemcpyDtoD(c.p+cu.DevicePtr(off), p.p, n); err != nil {
			return nil, b.fail("ConcatRows: cuMemcpyDtoD", err)
		}
		off += n
	}
	for _, w := range ws {
		p := wt(w)
		if err := cu.MemFree(p.p); err != nil {
			return nil, b.fail("ConcatRows: cuMemFree", err)
		}
		delete(b.allocs, p.p)
		p.p = 0
	}
	return c, nil
}

// scratch is a device buffer that grows on demand.
type scratch struct {
	p    cu.DevicePtr
	size int64
}

// get returns at least n bytes; growing waits for queued work that may
// still use the old allocation.
func (s *scratch) get(b *Backend, n int64) cu.DevicePtr {
	if n <= s.size {
		return s.p
	}
	if s.p != 0 {
		b.must("synchronize", b.stream.Synchronize())
		b.must("cuMemFree", cu.MemFree(s.p))
		s.p, s.size = 0, 0
	}
	n = max(n, 2*s.size)
	p, err := cu.MemAlloc(n)
	b.must("cuMemAlloc scratch", err)
	s.p, s.size = p, n
	return p
}

func (s *scratch) free() {
	if s.p != 0 {
		cu.MemFree(s.p)
		s.p, s.size = 0, 0
	}
}

// staging uploads small host arrays (token ids, positions, slots, row and
// block tables, attention work lists) without a host-device
// synchronisation per call, and packed: put copies an array into pinned
// host memory and returns the device address at the same offset of the
// chunk's device twin, and the bytes put since the last upload go to the
// device in one cuMemcpyHtoDAsync right before the next launch (flush),
// which is the first that may read them. An array equal to one put since
// the last drain is not staged again: its address is returned, so the
// layers of a step, which pass the same positions, slots and attention
// plan, upload them once. Space is only reused once the stream has
// drained (rewind, called by Read, Pick and Synchronize): until then a
// kernel may still read it. When the current chunk is full another, larger
// one is added; chunks are kept for the next steps.
type staging struct {
	chunks []stageChunk
	cur    int        // chunk being filled
	puts   []stagePut // the arrays put since the last rewind
}

// stageChunk is one pinned host arena and its device twin.
type stageChunk struct {
	host unsafe.Pointer // pinned host memory (C memory)
	dev  cu.DevicePtr
	size int
	used int
	sent int // bytes [0, sent) are uploaded or queued for upload
}

// stagePut is one staged array: its pinned bytes and device address.
type stagePut struct {
	host []byte
	dev  cu.DevicePtr
}

// reserve returns n bytes (rounded up to 16) of pinned host memory and
// the device memory at the same offset of its chunk; moving on to the next
// chunk flushes the current one.
func (s *staging) reserve(b *Backend, n int) (unsafe.Pointer, cu.DevicePtr) {
	n = max((n+15)&^15, 16)
	for s.cur < len(s.chunks) && s.chunks[s.cur].used+n > s.chunks[s.cur].size {
		s.flush(b)
		s.cur++
	}
	if s.cur == len(s.chunks) && s.cur > 0 && n <= s.chunks[s.cur-1].size && b.stream.Query() == nil {
		// Full, but the stream has drained (a side view's stream is never
		// waited for by a Read): start over instead of growing.
		s.rewind()
		for s.chunks[s.cur].used+n > s.chunks[s.cur].size {
			s.cur++ // stops at the last chunk, the largest
		}
	}
	if s.cur == len(s.chunks) {
		size := stageMin
		if k := len(s.chunks); k > 0 {
			size = 2 * s.chunks[k-1].size
		}
		s.chunks = append(s.chunks, newStageChunk(b, max(size, n)))
	}
	c := &s.chunks[s.cur]
	off := c.used
	c.used += n
	return unsafe.Add(c.host, off), c.dev + cu.DevicePtr(off)
}

// put stages v (or finds it staged) and returns its device address; it
// reaches the device with the next flush.
func (s *staging) put(b *Backend, v []int32) uint64 {
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
	for _, p := range s.puts {
		if bytes.Equal(p.host, raw) {
			return uint64(p.dev)
		}
	}
	h, d := s.reserve(b, len(raw))
	host := unsafe.Slice((*byte)(h), len(raw))
	copy(host, raw)
	s.puts = append(s.puts, stagePut{host, d})
	return uint64(d)
}

// flush queues the upload of the current chunk's bytes not sent yet, in
// one copy; the caller has entered.
func (s *staging) flush(b *Backend) {
	if s.cur == len(s.chunks) {
		return
	}
	c := &s.chunks[s.cur]
	if c.used == c.sent {
		return
	}
	b.must("cuMemcpyHtoDAsync", cu.MemcpyHtoDAsync(c.dev+cu.DevicePtr(c.sent), unsafe.Add(c.host, c.sent), int64(c.used-c.sent), b.stream))
	c.sent = c.used
}

func newStageChunk(b *Backend, size int) stageChunk {
	var h unsafe.Pointer
	if r := C.pc_alloc_host(&h, C.size_t(size)); r != C.CUDA_SUCCESS {
		panic(b.fail(fmt.Sprintf("cuMemAllocHost(%d)", size), fmt.Errorf("CUresult %d", int(r))))
	}
	d, err := cu.MemAlloc(int64(size))
	if err != nil {
		C.pc_free_host(h)
		b.must("cuMemAlloc staging", err)
	}
	return stageChunk{host: h, dev: d, size: size}
}

// rewind makes all staging space reusable; the stream must have drained.
func (s *staging) rewind() {
	for i := range s.chunks {
		s.chunks[i].used, s.chunks[i].sent = 0, 0
	}
	s.cur = 0
	clear(s.puts) // no references into the arena stay behind
	s.puts = s.puts[:0]
}

func (s *staging) free() {
	for _, c := range s.chunks {
		C.pc_free_host(c.host)
		cu.MemFree(c.dev)
	}
	s.chunks, s.cur = nil, 0
}

// ---------------------------------------------------------------------------
// Launching.

// newParams allocates a stream's launch parameter array (C memory, nil
// when out of memory); freeParams frees it (nil is fine).
func newParams() unsafe.Pointer { return unsafe.Pointer(C.pc_params(maxArgs)) }

func freeParams(p unsafe.Pointer) { C.free(p) }

// maxArgs is the most parameters a kernel of kernels.cu takes.
const maxArgs = 16

// Kernel argument encoders: every argument travels as 8 bytes of the
// persistent parameter array; the kernel reads its own width from the low
// bytes (little-endian).
func i64(v int) uint64          { return uint64(int64(v)) }
func f32(v float32) uint64      { return uint64(math.Float32bits(v)) }
func ptr(p cu.DevicePtr) uint64 { return uint64(p) }

// wptr is a weight's address, 0 for a nil weight (an optional bias).
func wptr(w kernels.Weight) (uint64, uint64) {
	if w == nil {
		return 0, 0
	}
	ww := wt(w)
	return uint64(ww.p), uint64(ww.dt)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// launch runs fn on the backend's stream; the caller has entered. The
// arguments go through the backend's persistent C parameter array (the
// driver copies them at the call), so a launch allocates nothing.
func (b *Backend) launch(fn function, gx, gy, bx, by int, args ...uint64) {
	if gx == 0 || gy == 0 {
		return
	}
	if len(args) > maxArgs {
		panic(fmt.Sprintf("cuda: %d kernel arguments, at most %d", len(args), maxArgs))
	}
	b.stage.flush(b) // the arrays staged for this launch
	copy(unsafe.Slice((*uint64)(unsafe.Add(b.params, maxArgs*int(unsafe.Sizeof(uintptr(0))))), maxArgs), args)
	r := C.pc_launch(C.uintptr_t(fn), C.uint(gx), C.uint(gy), C.uint(bx), C.uint(by),
		C.uintptr_t(uintptr(unsafe.Pointer(b.stream.C()))), (*unsafe.Pointer)(b.params))
	b.must("cuLaunchKernel", cuError(r))
}

// cuError is the gorgonia.org/cu error of a driver result (nil for
// CUDA_SUCCESS), so that errors.Is matches cu's constants (cu.IllegalAddress,
// …) for the calls this package makes itself.
func cuError(r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	v := reflect.New(reflect.TypeOf(cu.Success)).Elem()
	v.SetInt(int64(r))
	return v.Interface().(error)
}

// ---------------------------------------------------------------------------
// Ops.

// MatMul computes out[m × n] = x[m × k] · w[n × k]ᵀ (+ bias).
func (b *Backend) MatMul(out, x kernels.Buffer, w, bias kernels.Weight, m int) {
	if m == 0 {
		return
	}
	b.enter()
	defer b.leave()
	ww := wt(w)
	n := ww.shape[0]
	k := ww.n / n
	o, xb := buf(out), buf(x)
	checkRange("MatMul out", 0, m*n, o.n)
	checkRange("MatMul x", 0, m*k, xb.n)
	bp, bdt := wptr(bias)
	if b.blas == nil {
		b.launch(b.fn.gemmRef, ceilDiv(n, gemmTile), ceilDiv(m, gemmTile), gemmTile, gemmTile,
			ptr(o.p), ptr(xb.p), ptr(ww.p), uint64(ww.dt), bp, bdt, i64(m), i64(n), i64(k))
		return
	}
	beta := float32(0)
	if bias != nil {
		b.launch(b.fn.biasRows, ceilDiv(m*n, ewThreads), 1, ewThreads, 1, ptr(o.p), bp, bdt, i64(m), i64(n))
		beta = 1
	}
	xp := xb.p
	if ww.dt != kernels.F32 {
		xp = b.halfInput(xb, m*k, ww.dt)
	}
	b.must("MatMul", b.blas.gemm(o.p, xp, ww.p, ww.dt, m, n, k, beta))
}

// halfInput returns the address of x[:n] rounded to dt: the copy the
// previous op wrote in x's shadow, or a to_half launch's. It gives x a
// shadow of dt, so that x's next producer writes the copy itself.
func (b *Backend) halfInput(x *buffer, n int, dt kernels.DType) cu.DevicePtr {
	if b.prev.x == x && b.prev.n >= n && x.halfDT == dt {
		return x.half
	}
	if x.halfDT != dt {
		if x.half != 0 {
			b.must("synchronize", b.stream.Synchronize())
			b.must("cuMemFree", cu.MemFree(x.half))
			delete(b.allocs, x.half)
		}
		p, err := cu.MemAlloc(int64(2 * max(x.n, 1)))
		b.must("cuMemAlloc 16-bit shadow", err)
		b.allocs[p] = struct{}{}
		x.half, x.halfDT = p, dt
	}
	b.launch(b.fn.toHalf, ceilDiv(n, ewThreads), 1, ewThreads, 1, ptr(x.half), ptr(x.p), i64(n), uint64(dt))
	return x.half
}

// launchHalfOut launches a producer fn of out[:n] whose last two arguments
// are the address and dtype of out's 16-bit copy: out's shadow, recorded
// as fresh, or zeros (no copy) when out has none (it never fed a 16-bit
// GEMM) or the GEMMs are not cuBLAS's.
func (b *Backend) launchHalfOut(fn function, gx, bx int, out *buffer, n int, args ...uint64) {
	var a [maxArgs]uint64
	k := copy(a[:maxArgs-2], args)
	half := out.halfDT != 0 && b.blas != nil
	if half {
		a[k], a[k+1] = ptr(out.half), uint64(out.halfDT)
	}
	b.launch(fn, gx, 1, bx, 1, a[:k+2]...)
	if half {
		b.fresh = halfCopy{out, n}
	}
}

// Embed gathers table rows for the non-negative ids.
func (b *Backend) Embed(out kernels.Buffer, table kernels.Weight, ids []int32) {
	if len(ids) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	t := wt(table)
	width := t.n / t.shape[0]
	o := buf(out)
	checkRange("Embed", 0, len(ids)*width, o.n)
	for _, id := range ids {
		if int(id) >= t.shape[0] {
			panic(fmt.Sprintf("cuda: Embed id %d out of a table of %d", id, t.shape[0]))
		}
	}
	b.launch(b.fn.embed, len(ids), 1, 128, 1, ptr(o.p), ptr(t.p), uint64(t.dt), b.stage.put(b, ids), i64(width))
}

func (b *Backend) weightTo(dst kernels.Buffer, off int, w kernels.Weight, accumulate int) {
	b.enter()
	defer b.leave()
	ww, d := wt(w), buf(dst)
	checkRange("CopyWeight/AddWeight", off, ww.n, d.n)
	b.launch(b.fn.weightTo, ceilDiv(ww.n, ewThreads), 1, ewThreads, 1, d.at(off), ptr(ww.p), uint64(ww.dt), i64(ww.n), i64(accumulate))
}

// CopyWeight copies all of w into dst[off:].
func (b *Backend) CopyWeight(dst kernels.Buffer, off int, w kernels.Weight) {
	b.weightTo(dst, off, w, 0)
}

// AddWeight adds all of w to dst[off:].
func (b *Backend) AddWeight(dst kernels.Buffer, off int, w kernels.Weight) {
	b.weightTo(dst, off, w, 1)
}

// RMSNorm normalises m rows of width len(w).
func (b *Backend) RMSNorm(out, x kernels.Buffer, w kernels.Weight, m int, eps float32) {
	b.rmsNorm(out, x, nil, w, m, eps)
}

// AddRMSNorm is the fused residual step of a LLaMA layer: x += delta, then
// out = RMSNorm(x), in one pass over the rows. It is equivalent to
// Add(x, x, delta, m·width) followed by RMSNorm(out, x, w, m, eps).
func (b *Backend) AddRMSNorm(out, x, delta kernels.Buffer, w kernels.Weight, m int, eps float32) {
	b.rmsNorm(out, x, delta, w, m, eps)
}

func (b *Backend) rmsNorm(out, x, delta kernels.Buffer, w kernels.Weight, m int, eps float32) {
	b.enter()
	defer b.leave()
	ww := wt(w)
	o, xb := buf(out), buf(x)
	checkRange("RMSNorm", 0, m*ww.n, min(o.n, xb.n))
	var dp uint64
	if delta != nil {
		d := buf(delta)
		checkRange("AddRMSNorm", 0, m*ww.n, d.n)
		dp = ptr(d.p)
	}
	b.launchHalfOut(b.fn.rmsnorm, m, rowThreads, o, m*ww.n, ptr(o.p), ptr(xb.p), dp, ptr(ww.p), uint64(ww.dt), i64(ww.n), f32(eps))
}

// LayerNorm normalises m rows of width len(w).
func (b *Backend) LayerNorm(out, x kernels.Buffer, w, bias kernels.Weight, m int, eps float32) {
	b.enter()
	defer b.leave()
	ww, bb := wt(w), wt(bias)
	o, xb := buf(out), buf(x)
	checkRange("LayerNorm", 0, m*ww.n, min(o.n, xb.n))
	b.launch(b.fn.layernorm, m, 1, rowThreads, 1, ptr(o.p), ptr(xb.p), ptr(ww.p), uint64(ww.dt), ptr(bb.p), uint64(bb.dt), i64(ww.n), f32(eps))
}

// RoPEStore rotates the queries and keys of qkv's rows into q and the
// caches and copies the values, in one launch; the cosines and sines come
// from the backend's table (ropeTable).
func (b *Backend) RoPEStore(q, kc, vc, qkv kernels.Buffer, pos, slots []int32, heads, headDim int, theta float32) {
	m := len(pos)
	if m == 0 {
		return
	}
	b.enter()
	defer b.leave()
	w := heads * headDim
	qb, xb := buf(q), buf(qkv)
	kb, vb := kvCaches("RoPEStore", kc, vc)
	checkRange("RoPEStore q", 0, m*w, qb.n)
	checkRange("RoPEStore qkv", 0, 3*m*w, xb.n)
	if len(slots) != m {
		panic(fmt.Sprintf("cuda: RoPEStore: %d slots for %d rows", len(slots), m))
	}
	maxPos := int32(0)
	for i, p := range pos {
		checkRange("RoPEStore cache", int(slots[i])*w, w, min(kb.n, vb.n))
		if p < 0 {
			panic(fmt.Sprintf("cuda: RoPEStore: position %d", p))
		}
		maxPos = max(maxPos, p)
	}
	cs := b.rope.get(b, int(maxPos)+1, headDim, theta)
	b.launch(b.fn.ropeStore, m, 1, 128, 1, ptr(qb.p), ptr(kb.p), ptr(vb.p), uint64(kb.cacheType()), ptr(xb.p),
		b.stage.put(b, pos), b.stage.put(b, slots), ptr(cs), i64(heads), i64(headDim))
}

// ropeTable is the device table of RoPE's cosines and sines for positions
// [0, npos) of one head dimension and θ: position p's row holds hd/2
// cosines then hd/2 sines (kernels.RoPECosSin, the CPU backend's values),
// so the kernel computes no trigonometry and matches the CPU bit for bit.
// It grows (by doubling, from 4096 positions) when a position beyond it
// comes, outside steady decoding.
type ropeTable struct {
	p        cu.DevicePtr
	npos, hd int
	theta    float32
}

// get returns the table covering positions [0, need); the caller has
// entered.
func (t *ropeTable) get(b *Backend, need, hd int, theta float32) cu.DevicePtr {
	if t.p != 0 && need <= t.npos && hd == t.hd && theta == t.theta {
		return t.p
	}
	n := 4096
	if hd == t.hd && theta == t.theta {
		n = max(n, 2*t.npos)
	}
	for n < need {
		n *= 2
	}
	half := hd / 2
	inv := kernels.RoPEInvFreq(nil, hd, theta)
	tab := slices.Grow(b.host[:0], n*hd)[:n*hd]
	for p := range n {
		row := tab[p*hd:]
		for d, f := range inv {
			row[d], row[half+d] = kernels.RoPECosSin(int32(p), f)
		}
	}
	b.host = tab
	b.must("synchronize", b.stream.Synchronize()) // queued kernels may read the old table
	t.free()
	size := int64(4 * len(tab))
	p, err := cu.MemAlloc(size)
	b.must(fmt.Sprintf("cuMemAlloc(%d bytes) RoPE table", size), err)
	b.must("cuMemcpyHtoD RoPE table", cu.MemcpyHtoD(p, unsafe.Pointer(unsafe.SliceData(tab)), size))
	t.p, t.npos, t.hd, t.theta = p, n, hd, theta
	return p
}

func (t *ropeTable) free() {
	if t.p != 0 {
		cu.MemFree(t.p)
		*t = ropeTable{}
	}
}

// Elementwise op codes (EW_* in kernels.cu).
const (
	ewAdd = iota
	ewGELU
	ewQuickGELU
)

func (b *Backend) elementwise(op int, out, a, c kernels.Buffer, n int) {
	if n == 0 {
		return
	}
	b.enter()
	defer b.leave()
	o, ab := buf(out), buf(a)
	checkRange("elementwise", 0, n, min(o.n, ab.n))
	var cp uint64
	if c != nil {
		cb := buf(c)
		checkRange("elementwise", 0, n, cb.n)
		cp = ptr(cb.p)
	}
	b.launch(b.fn.elementwise, ceilDiv(n, ewThreads), 1, ewThreads, 1, ptr(o.p), ptr(ab.p), cp, i64(n), i64(op))
}

// Add computes out = a + c over n elements.
func (b *Backend) Add(out, a, c kernels.Buffer, n int) { b.elementwise(ewAdd, out, a, c, n) }

// SiLUMul computes silu(gate) · up for m rows of gateUp[m × 2·width] into
// out[m × width], and out's 16-bit copy where the down GEMM takes one.
func (b *Backend) SiLUMul(out, gateUp kernels.Buffer, m, width int) {
	n := m * width
	if n == 0 {
		return
	}
	b.enter()
	defer b.leave()
	o, gu := buf(out), buf(gateUp)
	checkRange("SiLUMul out", 0, n, o.n)
	checkRange("SiLUMul gateUp", 0, 2*n, gu.n)
	b.launchHalfOut(b.fn.siluMul, ceilDiv(n, ewThreads), ewThreads, o, n, ptr(o.p), ptr(gu.p), i64(width), i64(n))
}

// GELU applies the exact (erf) GELU to x[:n] in place.
func (b *Backend) GELU(x kernels.Buffer, n int) { b.elementwise(ewGELU, x, x, nil, n) }

// QuickGELU applies x·sigmoid(1.702x) to x[:n] in place.
func (b *Backend) QuickGELU(x kernels.Buffer, n int) { b.elementwise(ewQuickGELU, x, x, nil, n) }

// Softmax normalises each of the m rows of x[m × width] in place.
func (b *Backend) Softmax(x kernels.Buffer, m, width int) {
	b.enter()
	defer b.leave()
	xb := buf(x)
	checkRange("Softmax", 0, m*width, xb.n)
	b.launch(b.fn.softmax, m, 1, rowThreads, 1, ptr(xb.p), i64(width))
}

// Pick writes a token id for each of the first len(ids) rows of x[· ×
// width] to ids, reading back the ids alone: with draws nil every row's
// argmax (sample.Argmax's rule), else each row picked by its Draw
// (temperature 0 greedy, else sample.Picker's rule at its U; the pick
// kernel). It waits for the stream.
func (b *Backend) Pick(ids []int32, x kernels.Buffer, width int, draws []kernels.Draw) {
	if len(ids) == 0 {
		return
	}
	if draws != nil && len(draws) != len(ids) {
		panic(fmt.Sprintf("cuda: Pick: %d draws for %d rows", len(draws), len(ids)))
	}
	b.enter()
	defer b.leave()
	xb := buf(x)
	checkRange("Pick", 0, len(ids)*width, xb.n)
	out := b.argOut.get(b, int64(4*len(ids)))
	var params uint64 // null: greedy rows only
	if draws != nil {
		params = b.stage.put(b, drawWords(draws))
	}
	b.launch(b.fn.pick, len(ids), 1, pickThreads, 1, ptr(out), ptr(xb.p), i64(width), params)
	b.must("cuMemcpyDtoH", cu.MemcpyDtoHAsync(unsafe.Pointer(unsafe.SliceData(ids)), out, int64(4*len(ids)), b.stream))
	b.must("synchronize", b.stream.Synchronize())
	b.stage.rewind()
}

// drawWords is draws as the int32 words the pick kernel reads.
func drawWords(draws []kernels.Draw) []int32 {
	return unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(draws))), len(draws)*int(unsafe.Sizeof(kernels.Draw{}))/4)
}

func (b *Backend) moveRows(dst, src kernels.Buffer, rows []int32, width, scatter int) {
	if len(rows) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	d, s := dst.(*buffer), buf(src) // only a scatter's destination may be a 16-bit cache
	if scatter == 0 {
		d = buf(dst)
	}
	big, small := d, s
	if scatter == 0 {
		big, small = s, d
	}
	checkRange("Scatter/GatherRows", 0, len(rows)*width, small.n)
	for _, r := range rows {
		checkRange("Scatter/GatherRows", int(r)*width, width, big.n)
	}
	if d.dt != 0 { // store_rows rounds to the cache's type
		b.launch(b.fn.storeRows, len(rows), 1, 128, 1, ptr(d.p), uint64(d.dt), ptr(s.p), b.stage.put(b, rows), i64(width))
		return
	}
	b.launch(b.fn.moveRows, len(rows), 1, 128, 1, ptr(d.p), ptr(s.p), b.stage.put(b, rows), i64(width), i64(scatter))
}

// ScatterRows copies row i of src to row rows[i] of dst, rounding to a
// 16-bit KV cache's type.
func (b *Backend) ScatterRows(dst, src kernels.Buffer, rows []int32, width int) {
	b.moveRows(dst, src, rows, width, 1)
}

// GatherRows copies row rows[i] of src to row i of dst.
func (b *Backend) GatherRows(dst, src kernels.Buffer, rows []int32, width int) {
	b.moveRows(dst, src, rows, width, 0)
}
