package linalg

import "fmt"

// Attn is one call of the attention kernel (Attend): Rows query rows of one
// sequence and one group of Heads heads of HeadDim elements each, against
// the keys and values of the positions the rows see.
type Attn struct {
	// Out and Q hold the rows at stride LD, the group's first element at
	// index 0: row j's head h is Q[j*LD+h*HeadDim:][:HeadDim], its output
	// goes to the same place in Out.
	Out, Q []float32
	// K and V hold one row per cached position at stride LD, the group's
	// first element at index 0: position p is row
	// Blocks[p/BlockSize]*BlockSize + p%BlockSize (a paged cache), or row
	// p when Blocks is nil. A 16-bit cache (KV16 BF16 or F16) holds them in
	// K16 and V16 instead, in the same layout, widened exactly on reading.
	K, V      []float32
	K16, V16  []uint16
	KV16      Half
	LD        int
	Blocks    []int32
	BlockSize int
	// Row j sees positions 0 … Keys-1, and j more when Causal.
	Rows, Keys     int
	Causal         bool
	Heads, HeadDim int
	Scale          float32 // factor of the scores (1/√HeadDim)
}

// Attend computes a's rows with the vector kernel and reports true, or
// reports false, doing nothing, where no vector kernel is in use (Kernel()
// is "go"): the caller runs its portable path then. It runs on the calling
// goroutine (for use inside a worker pool), grows *scratch as needed and
// otherwise allocates nothing.
//
// Batch invariance: a row's result depends only on its queries and the
// keys and values it sees, with reduction orders fixed by HeadDim and the
// number of positions (see attn_avx2.c): never on Rows, the other rows,
// the block layout or the caller's split of the work.
func Attend(a Attn, scratch *[]float32) bool {
	if fast == nil || fast.attend == nil {
		return false
	}
	a.check()
	if a.Rows == 0 {
		return true
	}
	nmax := a.Keys
	if a.Causal {
		nmax += a.Rows - 1
	}
	if need := fast.attendScratch(a.Heads, a.HeadDim, nmax); len(*scratch) < need {
		*scratch = make([]float32, need)
	}
	fast.attend(a, *scratch)
	return true
}

// check panics unless every row and position a reads or writes lies inside
// its slice.
func (a *Attn) check() {
	w := a.Heads * a.HeadDim
	bad := func(what string) {
		panic(fmt.Sprintf("linalg: attention %s: rows=%d keys=%d causal=%v heads=%d×%d ld=%d "+
			"blockSize=%d len(out)=%d len(q)=%d len(k)=%d len(v)=%d len(blocks)=%d",
			what, a.Rows, a.Keys, a.Causal, a.Heads, a.HeadDim, a.LD, a.BlockSize,
			len(a.Out), len(a.Q), len(a.K)+len(a.K16), len(a.V)+len(a.V16), len(a.Blocks)))
	}
	if a.Rows < 0 || a.Keys < 0 || a.Heads < 1 || a.HeadDim < 1 || a.LD < w {
		bad("bad shape")
	}
	if a.KV16 != 0 && a.KV16 != BF16 && a.KV16 != F16 {
		bad(fmt.Sprintf("16-bit type %d", a.KV16))
	}
	if a.Rows == 0 {
		return
	}
	if end := (a.Rows-1)*a.LD + w; len(a.Out) < end || len(a.Q) < end {
		bad("short q or out")
	}
	n := a.Keys
	if a.Causal {
		n += a.Rows - 1
	}
	kvLen := a.kvLen()
	if a.Blocks == nil {
		if n > 0 && (n-1)*a.LD+w > kvLen {
			bad("short keys or values")
		}
		return
	}
	if a.BlockSize < 1 || len(a.Blocks)*a.BlockSize < n {
		bad("short block table")
	}
	for i, b := range a.Blocks[:(n+a.BlockSize-1)/a.BlockSize] {
		last := int(b)*a.BlockSize + min(a.BlockSize, n-i*a.BlockSize) - 1
		if b < 0 || last*a.LD+w > kvLen {
			bad(fmt.Sprintf("block %d (%d) outside the cache", i, b))
		}
	}
}

// Half is the type of a 16-bit KV cache's elements.
type Half int

// The 16-bit element types (the values of gemm.h's PC_BF16 and PC_F16).
const (
	BF16 Half = Half(wBF16) // bfloat16: the upper half of a float32
	F16  Half = Half(wF16)  // IEEE half precision
)

// kvLen is the number of elements both the keys and the values hold.
func (a *Attn) kvLen() int {
	if a.KV16 != 0 {
		return min(len(a.K16), len(a.V16))
	}
	return min(len(a.K), len(a.V))
}
