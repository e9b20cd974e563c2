package cpu

import (
	"math"

	"github.com/pancap-serve/pancap/kernels"
)

// attentionTask computes one (query row, head) unit per item: dense
// (non-causal, equal-length sequences) or paged (causal, block tables).
// Each unit reduces over its keys in position order, so its result does not
// depend on the other units of the call.
type attentionTask struct {
	paged        bool
	out, q, k, v []float32
	heads, hd    int
	seqLen       int           // dense: rows per sequence
	seqs         []kernels.Seq // paged: the sequences
	rowSeq       []int32       // paged: query row index → index into seqs, grown as needed
	rowOf        []int32       // paged: query row index → row in q/out
	blockSize    int
	scores       [][]float32 // per-worker scratch [keys]
}

const attentionGrain = 2

func (t *attentionTask) run(wk, lo, hi int) {
	width := t.heads * t.hd
	scale := float32(1 / math.Sqrt(float64(t.hd)))
	for u := lo; u < hi; u++ {
		r, h := u/t.heads, u%t.heads
		var (
			qRow, nKeys, base int
			blocks            []int32
		)
		if t.paged {
			s := &t.seqs[t.rowSeq[r]]
			qRow = int(t.rowOf[r])
			nKeys = s.Pos + (qRow - s.Row) + 1
			blocks = s.Blocks
		} else {
			qRow = r
			nKeys = t.seqLen
			base = (r / t.seqLen) * t.seqLen
		}
		if cap(t.scores[wk]) < nKeys {
			t.scores[wk] = make([]float32, nKeys*2)
		}
		sc := t.scores[wk][:nKeys]
		q := t.q[qRow*width+h*t.hd : qRow*width+(h+1)*t.hd]
		mx := float32(math.Inf(-1))
		for p := range sc {
			k := t.k[t.keyOffset(blocks, base, p, h):][:t.hd]
			var d float32
			for i, qv := range q {
				d += qv * k[i]
			}
			d *= scale
			sc[p] = d
			mx = max(mx, d)
		}
		var sum float32
		for p, d := range sc {
			e := float32(math.Exp(float64(d - mx)))
			sc[p] = e
			sum += e
		}
		o := t.out[qRow*width+h*t.hd : qRow*width+(h+1)*t.hd]
		clear(o)
		inv := 1 / sum
		for p, e := range sc {
			v := t.v[t.keyOffset(blocks, base, p, h):][:t.hd]
			wgt := e * inv
			for i := range o {
				o[i] += wgt * v[i]
			}
		}
	}
}

// Attention computes dense non-causal attention over seqs sequences of
// seqLen rows each.
func (b *Backend) Attention(out, q, k, v kernels.Buffer, seqs, seqLen, heads, headDim int) {
	t := &b.attn
	t.paged = false
	t.out, t.q, t.k, t.v = data(out), data(q), data(k), data(v)
	t.heads, t.hd, t.seqLen = heads, headDim, seqLen
	b.pool.parallel(t, seqs*seqLen*heads, attentionGrain)
}

// PagedAttention computes causal attention of each Seq's query rows over
// the paged KV cache.
func (b *Backend) PagedAttention(out, q, kc, vc kernels.Buffer, seqs []kernels.Seq, heads, headDim, blockSize int) {
	t := &b.attn
	t.paged = true
	t.out, t.q, t.k, t.v = data(out), data(q), data(kc), data(vc)
	t.heads, t.hd, t.blockSize, t.seqs = heads, headDim, blockSize, seqs
	t.rowSeq, t.rowOf = t.rowSeq[:0], t.rowOf[:0]
	for si, s := range seqs {
		for j := 0; j < s.Rows; j++ {
			t.rowSeq = append(t.rowSeq, int32(si))
			t.rowOf = append(t.rowOf, int32(s.Row+j))
		}
	}
	b.pool.parallel(t, len(t.rowSeq)*heads, attentionGrain)
	t.seqs = nil
}

// keyOffset is the element offset of key/value position p, head h: in the
// paged cache when blocks is set, else at row base+p of a dense buffer.
func (t *attentionTask) keyOffset(blocks []int32, base, p, h int) int {
	row := base + p
	if blocks != nil {
		row = int(blocks[p/t.blockSize])*t.blockSize + p%t.blockSize
	}
	return row*t.heads*t.hd + h*t.hd
}
