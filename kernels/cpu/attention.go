package cpu

import (
	"math"

	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu/linalg"
	"github.com/pancap-serve/pancap/kernels/cpu/linalg/vec"
)

// attnRowBlock is the number of query rows of one attention work unit.
const attnRowBlock = 64

// attnHeadGroup is the number of heads of one attention work unit of
// several query rows (prefill): a unit reads that many heads' keys and values
// of a position as one contiguous run of memory (hd·attnHeadGroup floats),
// and its tiles of scores stay in L2. Units of one query row (decode) take
// as many heads as give every worker the same number of units (decodeGroup):
// whole cache rows per read where there are enough sequences, 1.4–1.6×
// faster for 8 sequences of 16 heads on Zen 3 (docs/notes/cpu-kernels.md).
const attnHeadGroup = 4

// rowBlocks is the number of units of attnRowBlock query rows that rows
// query rows make, per head group.
func rowBlocks(rows int) int { return (rows + attnRowBlock - 1) / attnRowBlock }

// attnUnit is one piece of attention work: query rows [row, row+rows) of
// one sequence, heads [head, head+nh). Its first row sees keys
// [0, firstKeys); row j sees firstKeys+j keys when causal, else all
// firstKeys.
type attnUnit struct {
	seq       int // index into seqs (paged) or sequence number (dense)
	head, nh  int // first head and head count
	row, rows int // first query row in q/out and the row count
	firstKeys int
}

// attentionTask computes attention units in parallel. Each unit is one call
// of linalg.Attend (the vector kernel) where there is one; otherwise the
// portable path computes every query row on its own, in position order: its
// scores are vec.Dot products (whose reduction order depends only on the
// head size), its softmax and its weighted sum of values (vec.Axpy, one
// position after the other) run over the positions it sees. Either way a
// row's result never depends on the other rows or sequences of the call,
// nor on how a prefill was chunked, and keys and values are read in place
// from the cache: nothing is gathered or transposed.
type attentionTask struct {
	causal    bool
	out, q    []float32     // [rows × heads·hd]
	k, v      []float32     // paged: [blocks·blockSize × heads·hd]; dense: like q
	k16, v16  []uint16      // a 16-bit paged cache instead of k and v
	kv16      kernels.DType // its type (BF16 or F16); 0 when k and v hold the cache
	heads, hd int
	seqLen    int           // dense: rows per sequence
	seqs      []kernels.Seq // paged: the sequences
	blockSize int
	units     []attnUnit
	scratch   []attnScratch // per worker
}

// attnScratch is one worker's buffers, grown as needed.
type attnScratch struct {
	fast []float32 // linalg.Attend's scratch
	s    []float32 // [nh × keys] scores, then probabilities, of one row
	o    []float32 // [nh × hd] the row's output
	off  []int     // [keys] offset of each position's key/value row of the head
	kv   []float32 // [nh × hd] one position's keys or values widened from a 16-bit cache
}

func growTo[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

func (t *attentionTask) Run(wk, lo, hi int) {
	sc := &t.scratch[wk]
	for _, u := range t.units[lo:hi] {
		if !t.fast(sc, u) {
			t.portable(sc, u)
		}
	}
}

// fast computes unit u with linalg's vector kernel, if there is one.
func (t *attentionTask) fast(sc *attnScratch, u attnUnit) bool {
	width, hOff := t.heads*t.hd, u.head*t.hd
	a := linalg.Attn{
		Out: t.out[u.row*width+hOff:], Q: t.q[u.row*width+hOff:], LD: width,
		Rows: u.rows, Keys: u.firstKeys, Causal: t.causal,
		Heads: u.nh, HeadDim: t.hd, Scale: float32(1 / math.Sqrt(float64(t.hd))),
	}
	if t.seqs != nil {
		if t.kv16 != 0 {
			a.K16, a.V16, a.KV16 = t.k16[hOff:], t.v16[hOff:], linalg.BF16
			if t.kv16 == kernels.F16 {
				a.KV16 = linalg.F16
			}
		} else {
			a.K, a.V = t.k[hOff:], t.v[hOff:]
		}
		a.Blocks, a.BlockSize = t.seqs[u.seq].Blocks, t.blockSize
		if a.Blocks == nil {
			a.Blocks = []int32{} // paged, not dense: Attend panics on the short table
		}
	} else {
		first := u.seq * t.seqLen * width
		a.K, a.V = t.k[first+hOff:], t.v[first+hOff:]
	}
	return attend(a, &sc.fast)
}

// attend is linalg.Attend; tests swap it to run the portable path.
var attend = linalg.Attend

// portable computes unit u one query row at a time with vec.Dot and
// vec.Axpy.
func (t *attentionTask) portable(sc *attnScratch, u attnUnit) {
	hd, width := t.hd, t.heads*t.hd
	scale := float32(1 / math.Sqrt(float64(hd)))
	nk := u.firstKeys
	if t.causal {
		nk += u.rows - 1
	}
	hOff := u.head * hd
	sc.off = growTo(sc.off, nk)
	for p := range sc.off {
		sc.off[p] = t.keyRow(u, p)*width + hOff
	}
	sc.s = growTo(sc.s, u.nh*nk)
	sc.o = growTo(sc.o, u.nh*hd)
	for j := 0; j < u.rows; j++ {
		keys := u.firstKeys
		if t.causal {
			keys += j
		}
		q := t.q[(u.row+j)*width+hOff:][:u.nh*hd]
		// Scores, position by position: one contiguous run of the
		// group's keys per position. s[h*nk+p] is head h's score of p.
		for p, off := range sc.off[:keys] {
			k := t.cached(sc, t.k, t.k16, off, u.nh*hd)
			for h := 0; h < u.nh; h++ {
				sc.s[h*nk+p] = vec.Dot(q[h*hd:(h+1)*hd], k[h*hd:]) * scale
			}
		}
		for h := 0; h < u.nh; h++ {
			softmax(sc.s[h*nk : h*nk+keys])
		}
		o := sc.o
		clear(o)
		for p, off := range sc.off[:keys] {
			v := t.cached(sc, t.v, t.v16, off, u.nh*hd)
			for h := 0; h < u.nh; h++ {
				vec.Axpy(sc.s[h*nk+p], v[h*hd:(h+1)*hd], o[h*hd:(h+1)*hd])
			}
		}
		copy(t.out[(u.row+j)*width+hOff:][:u.nh*hd], o)
	}
}

// cached is the n keys or values at offset off of the cache (f, or h when
// the cache is 16-bit, widened into sc.kv).
func (t *attentionTask) cached(sc *attnScratch, f []float32, h []uint16, off, n int) []float32 {
	if t.kv16 == 0 {
		return f[off : off+n]
	}
	sc.kv = growTo(sc.kv, n)
	for i := range sc.kv {
		sc.kv[i] = widen(t.kv16, nil, h, off+i)
	}
	return sc.kv
}

// softmax replaces s with its softmax, summing in position order.
func softmax(s []float32) {
	mx := float32(math.Inf(-1))
	for _, d := range s {
		mx = max(mx, d)
	}
	var sum float32
	for p, d := range s {
		e := expf(d - mx)
		s[p] = e
		sum += e
	}
	inv := 1 / sum
	for p, e := range s {
		s[p] = e * inv
	}
}

// keyRow is the row of key/value position p of unit u: in the paged cache
// through the sequence's block table, else in the dense sequence.
func (t *attentionTask) keyRow(u attnUnit, p int) int {
	if t.seqs != nil {
		blocks := t.seqs[u.seq].Blocks
		return int(blocks[p/t.blockSize])*t.blockSize + p%t.blockSize
	}
	return u.seq*t.seqLen + p
}

// addUnits appends the units of rows query rows starting at row: groups of
// attnHeadGroup heads, or of decodeGroup heads for a single row.
func (t *attentionTask) addUnits(seq, row, rows, firstKeys, decodeGroup int) {
	group := attnHeadGroup
	if rows == 1 {
		group = decodeGroup
	}
	for h := 0; h < t.heads; h += group {
		nh := min(group, t.heads-h)
		for j := 0; j < rows; j += attnRowBlock {
			n := min(attnRowBlock, rows-j)
			fk := firstKeys
			if t.causal {
				fk += j
			}
			t.units = append(t.units, attnUnit{seq: seq, head: h, nh: nh, row: row + j, rows: n, firstKeys: fk})
		}
	}
}

// decodeGroup is the number of heads of a single-row unit in a call of
// rowUnits units of all heads: the heads split as few times as give every
// worker the same number of units (all heads when rowUnits is a multiple of
// the workers), down to attnHeadGroup. Fewer, larger units read longer runs
// of each cache row: one sequence on two workers runs 1.2× faster as two
// units of 8 heads than as four of 4 (docs/notes/cpu-kernels.md). A row's result
// does not depend on its group (the kernel computes each head on its own).
func (b *Backend) decodeGroup(heads, rowUnits int) int {
	splits := b.workers / gcd(max(rowUnits, 1), b.workers)
	return max((heads+splits-1)/splits, min(attnHeadGroup, heads))
}

// gcd is the greatest common divisor of a and b.
func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (b *Backend) attention(t *attentionTask) {
	if len(t.scratch) < b.workers {
		t.scratch = make([]attnScratch, b.workers)
	}
	b.parallel(t, len(t.units), 1)
	t.out, t.q, t.k, t.v, t.k16, t.v16, t.seqs = nil, nil, nil, nil, nil, nil, nil
}

// Attention computes dense non-causal attention over seqs sequences of
// seqLen rows each.
func (b *Backend) Attention(out, q, k, v kernels.Buffer, seqs, seqLen, heads, headDim int) {
	t := &b.attn
	t.causal, t.seqs, t.kv16 = false, nil, 0
	t.out, t.q, t.k, t.v = data(out), data(q), data(k), data(v)
	t.heads, t.hd, t.seqLen = heads, headDim, seqLen
	t.units = t.units[:0]
	group := b.decodeGroup(heads, seqs*rowBlocks(seqLen))
	for s := 0; s < seqs; s++ {
		t.addUnits(s, s*seqLen, seqLen, seqLen, group)
	}
	b.attention(t)
}

// PagedAttention computes causal attention of each Seq's query rows over
// the paged KV cache.
func (b *Backend) PagedAttention(out, q, kc, vc kernels.Buffer, seqs []kernels.Seq, heads, headDim, blockSize int) {
	t := &b.attn
	t.causal, t.seqs = true, seqs
	t.out, t.q = data(out), data(q)
	kb, vb := kc.(*buffer), vc.(*buffer)
	if (kb.h == nil) != (vb.h == nil) || kb.h != nil && kb.dt != vb.dt {
		panic("cpu: PagedAttention with a " + kb.dt.String() + " key cache and a " + vb.dt.String() + " value cache")
	}
	t.k, t.v, t.k16, t.v16, t.kv16 = kb.d, vb.d, kb.h, vb.h, 0
	if kb.h != nil {
		t.kv16 = kb.dt
	}
	t.heads, t.hd, t.blockSize = heads, headDim, blockSize
	t.units = t.units[:0]
	rowUnits := 0
	for _, s := range seqs {
		rowUnits += rowBlocks(s.Rows)
	}
	group := b.decodeGroup(heads, rowUnits)
	for i, s := range seqs {
		t.addUnits(i, s.Row, s.Rows, s.Pos+1, group)
	}
	b.attention(t)
}
