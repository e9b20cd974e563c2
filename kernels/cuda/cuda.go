//go:build cuda

package cuda

/*
#include <cuda.h>
#include <stdint.h>

static CUresult pc_alloc_host(void **p, size_t n) { return cuMemAllocHost(p, n); }
static CUresult pc_free_host(void *p) { return cuMemFreeHost(p); }
*/
import "C"

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"runtime"
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
	rowThreads = 256     // threads per row for row-wise kernels (multiple of 32)
	ewThreads  = 256     // threads per block for elementwise kernels
	gemmTile   = 16      // gemm_ref tile (GT in kernels.cu)
	stageMin   = 1 << 20 // initial pinned staging arena, bytes
	stageWrite = 1 << 18 // Writes up to this many elements go through staging
)

// Backend is the CUDA implementation of kernels.Backend. It is not safe for
// concurrent use: one goroutine owns it, as the interface requires. Every
// method locks its goroutine to its OS thread for the call and makes the
// backend's context current, so callers need no thread discipline.
type Backend struct {
	dev    cu.Device
	ctx    cu.CUContext
	stream cu.Stream
	mod    cu.Module
	fn     functions
	blas   *cublas // nil with GEMMReference
	name   string
	sms    int // multiprocessors: attention partitions are sized to fill them
	closed bool
	allocs map[cu.DevicePtr]struct{} // live buffers and weights, freed by Close

	argv []uint64         // kernel argument values, reused
	argp []unsafe.Pointer // pointers to argv's elements

	stage   staging
	half    scratch // activations rounded to bf16/fp16 for cuBLAS
	attnBuf scratch // attention partials or dense scores
	plan    attnPlan
	host    []int32 // host-side descriptor assembly, reused

	lost atomic.Pointer[error] // set once a sticky error has broken the context
}

// functions are the module's kernels.
type functions struct {
	gemmRef, toHalf, biasRows, embed, weightTo, moveRows, rmsnorm, layernorm, rope,
	elementwise, softmax, argmax, storeRows, attnCombine cu.Function
	attn map[attnKey]cu.Function // the attention kernels (attnKeys)
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
	if b.mod, err = cu.LoadData(kernelsPTX); err != nil {
		return fmt.Errorf("%w: load PTX (driver too old for PTX ISA 7.8 / CUDA 11.8?): %v", ErrCUDA, err)
	}
	for _, k := range []struct {
		f    *cu.Function
		name string
	}{
		{&b.fn.gemmRef, "gemm_ref"}, {&b.fn.toHalf, "to_half"}, {&b.fn.biasRows, "bias_rows"},
		{&b.fn.embed, "embed"}, {&b.fn.weightTo, "weight_to"}, {&b.fn.moveRows, "move_rows"},
		{&b.fn.rmsnorm, "rmsnorm"}, {&b.fn.layernorm, "layernorm"}, {&b.fn.rope, "rope"},
		{&b.fn.elementwise, "elementwise"}, {&b.fn.softmax, "softmax"}, {&b.fn.argmax, "argmax"},
		{&b.fn.storeRows, "store_rows"}, {&b.fn.attnCombine, "attn_combine"},
	} {
		if *k.f, err = b.mod.Function(k.name); err != nil {
			return fmt.Errorf("%w: kernel %s: %v", ErrCUDA, k.name, err)
		}
	}
	b.fn.attn = map[attnKey]cu.Function{}
	for _, k := range attnKeys() {
		if b.fn.attn[k], err = b.mod.Function(k.name()); err != nil {
			return fmt.Errorf("%w: kernel %s: %v", ErrCUDA, k.name(), err)
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

// release frees everything New acquired, in reverse order; zero handles are
// skipped so it also cleans up after a failed init.
func (b *Backend) release() {
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
	b.half.free()
	b.attnBuf.free()
	b.stage.free()
	if b.mod != (cu.Module{}) {
		b.mod.Unload()
	}
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
	b.lost.CompareAndSwap(nil, &lost)
	return *b.lost.Load()
}

// Lost returns nil while the backend works and, once a sticky CUDA error has
// broken its context, that error (wrapping kernels.ErrDeviceLost and
// ErrCUDA): nothing can run on this backend any more. Safe for concurrent
// use (a health check may poll it while the owner runs work).
func (b *Backend) Lost() error {
	if p := b.lost.Load(); p != nil {
		return *p
	}
	return nil
}

// Name describes the device, e.g. "cuda:0 (NVIDIA H100 80GB HBM3, sm_90,
// libcublas.so.12 v120304)".
func (b *Backend) Name() string { return b.name }

// Close waits for outstanding work and releases the backend's resources,
// buffers and weights included (they live in the backend's context). Later
// calls do nothing. A lost backend is released too (the driver calls fail
// fast on a broken context).
func (b *Backend) Close() {
	if b.closed {
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
// elements of type dt (BF16, F16; 0 for float32 storage).
type buffer struct {
	p  cu.DevicePtr
	n  int
	dt kernels.DType
}

func (x *buffer) Len() int { return x.n }

// cacheType is the buffer's element type as a KV cache.
func (x *buffer) cacheType() kernels.DType {
	if x.dt == 0 {
		return kernels.F32
	}
	return x.dt
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
// finished.
func (b *Backend) Free(x kernels.Buffer) {
	b.enter()
	defer b.leave()
	bb := x.(*buffer)
	if bb.p == 0 {
		return
	}
	b.must("synchronize", b.stream.Synchronize())
	b.must("cuMemFree", cu.MemFree(bb.p))
	delete(b.allocs, bb.p)
	bb.p, bb.n = 0, 0
}

// Write copies src into dst[off:], ordered after the queued work. It
// returns once src may be reused: small writes are copied into pinned
// staging memory and sent asynchronously, large ones synchronously.
func (b *Backend) Write(dst kernels.Buffer, off int, src []float32) {
	if len(src) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	d := buf(dst)
	checkRange("Write", off, len(src), d.n)
	dp := cu.DevicePtr(d.at(off))
	if len(src) <= stageWrite {
		// Through pinned memory: queued, no wait for the stream to drain.
		h, _ := b.stage.reserve(b, 4*len(src))
		copy(unsafe.Slice((*float32)(h), len(src)), src)
		b.must("cuMemcpyHtoDAsync", cu.MemcpyHtoDAsync(dp, h, int64(4*len(src)), b.stream))
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

// staging uploads small host arrays (token ids, positions, row and block
// tables) without a host-device synchronisation per call: values are copied
// into pinned host memory and sent with cuMemcpyHtoDAsync into device memory
// at the same offset. Space is only reused once the stream has drained
// (rewind, called by Read, Argmax and Synchronize): until then a kernel may
// still read it. When the current chunk is full another, larger one is
// added; chunks are kept for the next steps.
type staging struct {
	chunks []stageChunk
	cur    int // chunk being filled
}

// stageChunk is one pinned host arena and its device twin.
type stageChunk struct {
	host unsafe.Pointer // pinned host memory (C memory)
	dev  cu.DevicePtr
	size int
	used int
}

// reserve returns n bytes (rounded up to 16) of pinned host memory and
// the device memory at the same offset of its chunk.
func (s *staging) reserve(b *Backend, n int) (unsafe.Pointer, cu.DevicePtr) {
	n = max((n+15)&^15, 16)
	for s.cur < len(s.chunks) && s.chunks[s.cur].used+n > s.chunks[s.cur].size {
		s.cur++
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

// put stages v and returns its device address.
func (s *staging) put(b *Backend, v []int32) uint64 {
	h, d := s.reserve(b, 4*len(v))
	if len(v) > 0 {
		copy(unsafe.Slice((*int32)(h), len(v)), v)
		b.must("cuMemcpyHtoDAsync", cu.MemcpyHtoDAsync(d, h, int64(4*len(v)), b.stream))
	}
	return uint64(d)
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
		s.chunks[i].used = 0
	}
	s.cur = 0
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

// Kernel argument encoders: every argument travels as 8 bytes (gorgonia.org/cu
// copies 8 bytes per parameter); the kernel reads its own width from the
// low bytes (little-endian).
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

// launch runs fn on the backend's stream; the caller has entered.
func (b *Backend) launch(fn cu.Function, gx, gy, bx, by int, args ...uint64) {
	if gx == 0 || gy == 0 {
		return
	}
	b.argv = append(b.argv[:0], args...)
	b.argp = b.argp[:0]
	for i := range b.argv {
		b.argp = append(b.argp, unsafe.Pointer(&b.argv[i]))
	}
	b.must("cuLaunchKernel", fn.Launch(gx, gy, 1, bx, by, 1, 0, b.stream, b.argp))
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
		xp = b.half.get(b, int64(2*m*k))
		b.launch(b.fn.toHalf, ceilDiv(m*k, ewThreads), 1, ewThreads, 1, ptr(xp), ptr(xb.p), i64(m*k), uint64(ww.dt))
	}
	b.must("MatMul", b.blas.gemm(o.p, xp, ww.p, ww.dt, m, n, k, beta))
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
	b.launch(b.fn.rmsnorm, m, 1, rowThreads, 1, ptr(o.p), ptr(xb.p), dp, ptr(ww.p), uint64(ww.dt), i64(ww.n), f32(eps))
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

// RoPE rotates x[len(pos) × heads·headDim] in place.
func (b *Backend) RoPE(x kernels.Buffer, pos []int32, heads, headDim int, theta float32) {
	if len(pos) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	xb := buf(x)
	checkRange("RoPE", 0, len(pos)*heads*headDim, xb.n)
	// inv_freq exactly as the CPU backend computes it, sent as bit patterns.
	b.host = b.host[:0]
	for d := 0; d < headDim/2; d++ {
		e := float32(2*d) / float32(headDim)
		b.host = append(b.host, int32(math.Float32bits(1/float32(math.Pow(float64(theta), float64(e))))))
	}
	inv := b.stage.put(b, b.host)
	b.launch(b.fn.rope, len(pos), 1, 64, 1, ptr(xb.p), b.stage.put(b, pos), inv, i64(heads), i64(headDim))
}

// Elementwise op codes (EW_* in kernels.cu).
const (
	ewAdd = iota
	ewSiLUMul
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

// SiLUMul computes out = silu(gate) · up over n elements.
func (b *Backend) SiLUMul(out, gate, up kernels.Buffer, n int) {
	b.elementwise(ewSiLUMul, out, gate, up, n)
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

// Argmax writes the index of the largest value of each row of x[len(ids) ×
// width] (the lowest index among ties) to ids: greedy decoding reads back
// one int32 per row instead of the logits.
func (b *Backend) Argmax(ids []int32, x kernels.Buffer, width int) {
	if len(ids) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	xb := buf(x)
	checkRange("Argmax", 0, len(ids)*width, xb.n)
	out := b.half.get(b, int64(4*len(ids)))
	b.launch(b.fn.argmax, len(ids), 1, rowThreads, 1, ptr(out), ptr(xb.p), i64(width))
	b.must("cuMemcpyDtoH", cu.MemcpyDtoHAsync(unsafe.Pointer(unsafe.SliceData(ids)), out, int64(4*len(ids)), b.stream))
	b.must("synchronize", b.stream.Synchronize())
	b.stage.rewind()
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
