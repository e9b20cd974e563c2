package cpu

import (
	"math"

	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu/linalg"
)

// attnRowBlock is the number of query rows of one attention work unit.
const attnRowBlock = 64

// attnUnit is one piece of attention work: query rows [row, row+rows) of
// one sequence, one head. Its first row sees keys [0, firstKeys); row j
// sees firstKeys+j keys when causal, else all firstKeys.
type attnUnit struct {
	seq, head int // index into seqs (paged) or sequence number (dense); head
	row, rows int // first query row in q/out and the row count
	firstKeys int
}

// attentionTask computes attention units in parallel. For each unit the
// scores Q·Kᵀ come from linalg (whose reduction order depends only on the
// head size), the softmax and the weighted sum of values run in position
// order here, so a row's result never depends on the other rows or
// sequences of the call.
type attentionTask struct {
	causal       bool
	out, q, k, v []float32
	heads, hd    int
	seqLen       int           // dense: rows per sequence
	seqs         []kernels.Seq // paged: the sequences
	blockSize    int
	units        []attnUnit
	scratch      []attnScratch // per worker
}

// attnScratch is one worker's buffers, grown as needed.
type attnScratch struct {
	qh []float32 // [rows × hd] the unit's queries of its head
	kh []float32 // [keys × hd] the keys of its head
	s  []float32 // [rows × keys] scores, then probabilities
	vt []float32 // [hd × keys] the values of its head, transposed
	o  []float32 // [rows × hd] the unit's output
}

func growTo(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func (t *attentionTask) run(wk, lo, hi int) {
	sc := &t.scratch[wk]
	hd, width := t.hd, t.heads*t.hd
	scale := float32(1 / math.Sqrt(float64(hd)))
	for _, u := range t.units[lo:hi] {
		nk := u.firstKeys
		if t.causal {
			nk += u.rows - 1
		}
		// Keys are padded with zeros to a multiple of keyPad so that a row's
		// reductions over positions see its own keys then exact zeros,
		// whatever the unit's key count.
		nkp := (nk + keyPad - 1) / keyPad * keyPad
		hOff := u.head * hd
		sc.qh = growTo(sc.qh, u.rows*hd)
		sc.kh = growTo(sc.kh, nkp*hd)
		sc.vt = growTo(sc.vt, hd*nkp)
		sc.s = growTo(sc.s, u.rows*nkp)
		sc.o = growTo(sc.o, u.rows*hd)
		for j := 0; j < u.rows; j++ {
			copy(sc.qh[j*hd:(j+1)*hd], t.q[(u.row+j)*width+hOff:])
		}
		for p := 0; p < nk; p++ {
			off := t.keyRow(u, p)*width + hOff
			copy(sc.kh[p*hd:(p+1)*hd], t.k[off:])
			for d, x := range t.v[off : off+hd] {
				sc.vt[d*nkp+p] = x
			}
		}
		clear(sc.kh[nk*hd:])
		for d := 0; d < hd; d++ {
			clear(sc.vt[d*nkp+nk : (d+1)*nkp])
		}
		linalg.MatMulF32(sc.s, sc.qh, sc.kh, u.rows, nkp, hd)
		for j := 0; j < u.rows; j++ {
			keys := u.firstKeys
			if t.causal {
				keys += j
			}
			row := sc.s[j*nkp : (j+1)*nkp]
			s := row[:keys]
			mx := float32(math.Inf(-1))
			for p, d := range s {
				d *= scale
				s[p] = d
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
			clear(row[keys:])
		}
		linalg.MatMulF32(sc.o, sc.s, sc.vt, u.rows, hd, nkp)
		for j := 0; j < u.rows; j++ {
			copy(t.out[(u.row+j)*width+hOff:][:hd], sc.o[j*hd:(j+1)*hd])
		}
	}
}

// keyPad is the multiple the key count of an attention unit is padded to.
// Padding with exact zeros leaves linalg's per-lane sums unchanged for any
// lane count dividing it, so a row's output does not depend on how many
// keys the other rows of its unit see.
const keyPad = 64

// keyRow is the row of key/value position p of unit u: in the paged cache
// through the sequence's block table, else in the dense sequence.
func (t *attentionTask) keyRow(u attnUnit, p int) int {
	if t.seqs != nil {
		blocks := t.seqs[u.seq].Blocks
		return int(blocks[p/t.blockSize])*t.blockSize + p%t.blockSize
	}
	return u.seq*t.seqLen + p
}

// addUnits appends the units of rows query rows starting at row.
func (t *attentionTask) addUnits(seq, row, rows, firstKeys int) {
	for h := 0; h < t.heads; h++ {
		for j := 0; j < rows; j += attnRowBlock {
			n := min(attnRowBlock, rows-j)
			fk := firstKeys
			if t.causal {
				fk += j
			}
			t.units = append(t.units, attnUnit{seq: seq, head: h, row: row + j, rows: n, firstKeys: fk})
		}
	}
}

func (b *Backend) attention(t *attentionTask) {
	if len(t.scratch) < b.pool.workers {
		t.scratch = make([]attnScratch, b.pool.workers)
	}
	b.pool.parallel(t, len(t.units), 1)
	t.out, t.q, t.k, t.v, t.seqs = nil, nil, nil, nil, nil
}

// Attention computes dense non-causal attention over seqs sequences of
// seqLen rows each.
func (b *Backend) Attention(out, q, k, v kernels.Buffer, seqs, seqLen, heads, headDim int) {
	t := &b.attn
	t.causal, t.seqs = false, nil
	t.out, t.q, t.k, t.v = data(out), data(q), data(k), data(v)
	t.heads, t.hd, t.seqLen = heads, headDim, seqLen
	t.units = t.units[:0]
	for s := 0; s < seqs; s++ {
		t.addUnits(s, s*seqLen, seqLen, seqLen)
	}
	b.attention(t)
}

// PagedAttention computes causal attention of each Seq's query rows over
// the paged KV cache.
func (b *Backend) PagedAttention(out, q, kc, vc kernels.Buffer, seqs []kernels.Seq, heads, headDim, blockSize int) {
	t := &b.attn
	t.causal, t.seqs = true, seqs
	t.out, t.q, t.k, t.v = data(out), data(q), data(kc), data(vc)
	t.heads, t.hd, t.blockSize = heads, headDim, blockSize
	t.units = t.units[:0]
	for i, s := range seqs {
		t.addUnits(i, s.Row, s.Rows, s.Pos+1)
	}
	b.attention(t)
}
