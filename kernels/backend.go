// Package kernels defines Backend, the small set of tensor operations the
// model's forward passes are written in. A backend owns its activation
// buffers and its uploaded weights; the model only holds handles to them, so
// the same straight-line forward runs on the pure-Go CPU backend (kernels/cpu,
// the executable specification) and on accelerator backends. Host memory is
// touched only through Write (inputs) and Read (logits, image features).
//
// Every operation treats rows independently: the result of a row never
// depends on the other rows of the call (batch invariance), so a sequence's
// logits are the same whatever batch it runs in.
package kernels

import (
	"errors"
	"fmt"
	"math"
)

// DType is the storage type of a weight.
type DType int

// Weight storage types. Activations are always float32.
const (
	F32  DType = iota + 1 // IEEE float32
	BF16                  // bfloat16 (upper half of a float32)
	F16                   // IEEE half precision
)

// String returns the dtype's name as Hugging Face configs spell it.
func (d DType) String() string {
	switch d {
	case F32:
		return "float32"
	case BF16:
		return "bfloat16"
	case F16:
		return "float16"
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// Size is the byte size of one element.
func (d DType) Size() int {
	if d == F32 {
		return 4
	}
	return 2
}

// ErrWeight reports a weight that a backend cannot take (bad dtype, shape or
// byte length).
var ErrWeight = errors.New("kernels: invalid weight")

// ErrCacheType reports a KV-cache dtype that a backend does not offer.
var ErrCacheType = errors.New("kernels: unsupported KV-cache dtype")

// ErrDeviceLost reports that a backend's device can run no more work (a
// sticky CUDA error such as an illegal address): every later call fails
// the same way and only a new process recovers. A server should stop
// taking requests and exit so that its supervisor restarts it.
var ErrDeviceLost = errors.New("kernels: device lost")

// Buffer is a backend-owned float32 activation buffer.
type Buffer interface {
	// Len is the number of float32 elements.
	Len() int
}

// Weight is a backend-owned, read-only tensor in its stored dtype.
type Weight interface {
	// Shape is the tensor's shape, outermost first.
	Shape() []int
	// DType is the storage type.
	DType() DType
}

// Event marks a point in one of a backend's queues of work (Backend.Record).
// Its methods are called by the goroutine that owns the backend.
type Event interface {
	// Done reports, without waiting, whether the work queued before the
	// point has finished. After a device error it reports true: the error
	// surfaces at the backend's next call.
	Done() bool
	// Sync blocks the host until Done.
	Sync()
	// Free releases the event, which may still be pending.
	Free()
}

// Draw is how a backend that picks tokens on its device (an optional
// method of the CUDA backend, Pick) picks one row: Temperature 0 is greedy
// (sample.Argmax's rule), anything else sample.Picker's rule at U. Its
// layout is the device's (24 bytes; kernels.cu's Draw).
type Draw struct {
	Temperature float32
	TopK        int32   // 0: off
	TopP        float32 // 0 or 1: off
	_           int32
	U           float64 // where the draw falls, in [0, 1)
}

// Seq describes one sequence of a paged-attention call: its query rows are
// Rows consecutive rows starting at Row, at positions Pos, Pos+1, …; its keys
// and values live in the KV cache blocks of Blocks (block i holds positions
// [i·blockSize, (i+1)·blockSize)).
type Seq struct {
	Row    int     // first query row of the sequence in q and out
	Rows   int     // number of query rows
	Pos    int     // position of the first query row
	Blocks []int32 // block table covering positions [0, Pos+Rows)
}

// Backend is the op set the model's forward passes use. All buffers and
// weights passed to a backend must come from that backend. A Backend is not
// safe for concurrent use: one goroutine owns it.
//
// Shapes are given in elements; "rows × width" buffers are row-major.
type Backend interface {
	// Name identifies the backend and device, e.g. "cpu" or "cuda:0".
	Name() string
	// Close releases the backend's workers and memory.
	Close()

	// Alloc returns a zeroed buffer of n float32 elements.
	Alloc(n int) Buffer
	// AllocCache returns a zeroed KV-cache buffer of n elements stored as
	// dt (F32; BF16 or F16 where the backend supports them, else an error
	// wrapping ErrCacheType): the destination of ScatterRows, which rounds
	// to dt (to nearest, ties to even), and the kc and vc of
	// PagedAttention, which widens them exactly. A 16-bit cache halves the
	// memory and the bytes decode reads per position. Free releases it.
	AllocCache(n int, dt DType) (Buffer, error)
	// Free releases a buffer returned by Alloc.
	Free(b Buffer)
	// Write copies src into dst[off : off+len(src)].
	Write(dst Buffer, off int, src []float32)
	// Read copies src[off : off+len(dst)] into dst.
	Read(dst []float32, src Buffer, off int)
	// Copy copies n elements from src[srcOff:] to dst[dstOff:].
	Copy(dst Buffer, dstOff int, src Buffer, srcOff, n int)

	// Side returns a view of the backend that shares its weights, buffers
	// and memory but queues work on a second, independent queue (a CUDA
	// stream), so that long work there (the vision tower) overlaps the
	// work of this one (decode steps). The queues are ordered against each
	// other only by Record and Wait; buffers used on both need them. The
	// view belongs to the backend (the same one every call, used by the
	// same goroutine, released by the backend's Close; its own Close does
	// nothing) and its Side is itself. A backend that finishes every op
	// before returning (the CPU backend) returns itself.
	Side() Backend
	// Record returns an event that completes once the work queued on this
	// queue so far has finished. The caller frees it.
	Record() Event
	// Wait makes the work queued on this queue from now on wait, on the
	// device, for e (of either queue); the host does not wait.
	Wait(e Event)

	// LoadWeight makes a weight from little-endian bytes in dtype dt. The
	// backend may keep a reference to data (the CPU backend does, so
	// memory-mapped files stay the only copy); data must not change later.
	LoadWeight(dt DType, shape []int, data []byte) (Weight, error)
	// ConcatRows returns the weight [Σ rows × k] whose rows are those of ws
	// in order (all of one dtype and row width k), so that projections of
	// the same input run as one MatMul (a layer's Q|K|V, gate|up); row j of
	// the product equals the row of the separate product bit for bit. The
	// result serves MatMul only. The parts become the result's: they must
	// not be used or freed afterwards (the CPU backend aliases them, so a
	// memory-mapped file stays the only copy; the CUDA backend copies them
	// into one allocation and frees them).
	ConcatRows(ws []Weight) (Weight, error)

	// MatMul computes out[m × n] = x[m × k] · w[n × k]ᵀ (+ bias[n] when bias
	// is non-nil), with w widened from its dtype on the fly and float32
	// accumulation.
	MatMul(out, x Buffer, w, bias Weight, m int)
	// Embed gathers out[i] = table[ids[i]] for rows with ids[i] ≥ 0; rows
	// with a negative id are left untouched. table is [vocab × width].
	Embed(out Buffer, table Weight, ids []int32)
	// CopyWeight copies all of w, flattened, into dst[off:].
	CopyWeight(dst Buffer, off int, w Weight)
	// AddWeight adds all of w, flattened, to dst[off:].
	AddWeight(dst Buffer, off int, w Weight)

	// RMSNorm computes out[i] = x[i] / sqrt(mean(x[i]²) + eps) · w for m rows
	// of width len(w).
	RMSNorm(out, x Buffer, w Weight, m int, eps float32)
	// LayerNorm computes out[i] = (x[i] − mean) / sqrt(var + eps) · w + b for
	// m rows of width len(w).
	LayerNorm(out, x Buffer, w, b Weight, m int, eps float32)
	// AddRMSNorm is the residual step of a pre-norm layer in one pass: for
	// m rows of width len(w), x[i] += delta[i] (written back), then out[i] =
	// RMSNorm(x[i]). It equals Add followed by RMSNorm bit for bit.
	AddRMSNorm(out, x, delta Buffer, w Weight, m int, eps float32)
	// RoPEStore takes m rows of fused projections qkv[m × 3·W] (W =
	// heads·headDim: the query, key and value of a row side by side), writes
	// the query rotated by RoPE to q[m × W], and the key rotated and the value
	// as is to row slots[i] of the KV caches kc and vc (rounded to a 16-bit
	// cache's type as ScatterRows does). The rotation is LLaMA's rotate_half
	// pairing (d, d + headDim/2) at position pos[i], with the angle and its
	// cosine and sine of RoPECosSin.
	RoPEStore(q, kc, vc, qkv Buffer, pos, slots []int32, heads, headDim int, theta float32)

	// Add computes out[:n] = a[:n] + b[:n]; out may alias a or b.
	Add(out, a, b Buffer, n int)
	// SiLUMul computes, for m rows of gateUp[m × 2·width] (a row's gate and
	// up projections side by side), out[i][j] = silu(gate[i][j]) · up[i][j]
	// into out[m × width]; out must not overlap gateUp.
	SiLUMul(out, gateUp Buffer, m, width int)
	// GELU applies the exact (erf) GELU to x[:n] in place.
	GELU(x Buffer, n int)
	// QuickGELU applies x·sigmoid(1.702·x) to x[:n] in place.
	QuickGELU(x Buffer, n int)

	// ScatterRows copies row i of src[len(rows) × width] to row rows[i] of dst.
	ScatterRows(dst, src Buffer, rows []int32, width int)
	// GatherRows copies row rows[i] of src to row i of dst[len(rows) × width].
	GatherRows(dst, src Buffer, rows []int32, width int)

	// Attention computes dense, non-causal multi-head attention for seqs
	// independent sequences of seqLen rows each: q, k, v and out are
	// [seqs·seqLen × heads·headDim], scores are scaled by 1/sqrt(headDim).
	Attention(out, q, k, v Buffer, seqs, seqLen, heads, headDim int)
	// PagedAttention computes causal multi-head attention of the query rows
	// of each Seq over the keys and values stored in the paged caches kc and
	// vc ([blocks × blockSize × heads·headDim]); query row j of a sequence
	// sees positions 0 … Pos+j. The caller writes the rows' own keys and
	// values (RoPEStore or ScatterRows) before calling.
	PagedAttention(out, q, kc, vc Buffer, seqs []Seq, heads, headDim, blockSize int)
}

// CheckWeight validates a weight's dtype, shape and byte count as every
// backend's LoadWeight must, and returns its element count.
func CheckWeight(dt DType, shape []int, raw []byte) (int, error) {
	n := 1
	for _, d := range shape {
		if d <= 0 {
			return 0, fmt.Errorf("%w: shape %v", ErrWeight, shape)
		}
		n *= d
	}
	if dt != F32 && dt != BF16 && dt != F16 {
		return 0, fmt.Errorf("%w: dtype %v", ErrWeight, dt)
	}
	if len(raw) != n*dt.Size() {
		return 0, fmt.Errorf("%w: %d bytes for %v %v", ErrWeight, len(raw), dt, shape)
	}
	return n, nil
}

// RoPEInvFreq appends to dst the inverse frequencies of RoPE over a head of
// headDim, 1/θ^(2d/headDim) for d < headDim/2, each step rounded to float32
// as torch computes them: every backend rotates with these.
func RoPEInvFreq(dst []float32, headDim int, theta float32) []float32 {
	for d := 0; d < headDim/2; d++ {
		e := float32(2*d) / float32(headDim)
		dst = append(dst, 1/float32(math.Pow(float64(theta), float64(e))))
	}
	return dst
}

// RoPECosSin returns the cosine and sine of RoPE's angle at position p for
// inverse frequency f: the angle p·f rounded to float32 (as torch), then its
// cosine and sine rounded to float32 from float64. Every backend rotates
// with these values, bit for bit (the CUDA backend from a table of them).
func RoPECosSin(p int32, f float32) (c, s float32) {
	a := float64(float32(p) * f)
	return float32(math.Cos(a)), float32(math.Sin(a))
}
