//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"gorgonia.org/cu"

	"github.com/pancap-serve/pancap/kernels"
)

// Attention tiling, as in kernels.cu.
const (
	attnRows  = 16  // AQ: query rows per block
	attnSplit = 256 // ASPLIT: keys per partial
	attnMaxHD = 128 // MAXHD
	attnSeqN  = 6   // int32 fields of AttnSeq
	attnWorkN = 5   // int32 fields of AttnWork
	attnRowN  = 4   // int32 fields of AttnRow
)

// attnPlan is the host-side description of one attention call: sequences,
// work items (one block each, per head) and the per-row partial lists,
// flattened to int32 for staging. The split of a row's keys into ranges
// [0, 256), [256, 512), … depends on the row alone, which makes the result
// batch-invariant.
type attnPlan struct {
	seqs, work, rows, blocks []int32
}

func (p *attnPlan) reset() {
	p.seqs, p.work, p.rows, p.blocks = p.seqs[:0], p.work[:0], p.rows[:0], p.blocks[:0]
}

// add appends a sequence whose query rows [row, row+n) sit at positions
// pos…; a causal row at position P sees keys [0, P], a non-causal one
// [0, nkeys). Keys come through blocks (paged) or from rows keyBase+p.
func (p *attnPlan) add(row, n, pos, nkeys int, blocks []int32, keyBase int, causal bool) {
	si := int32(len(p.seqs) / attnSeqN)
	blkOff := int32(-1)
	if blocks != nil {
		blkOff = int32(len(p.blocks))
		p.blocks = append(p.blocks, blocks...)
	}
	p.seqs = append(p.seqs, int32(row), int32(n), int32(pos), int32(nkeys), blkOff, int32(keyBase))
	for t0 := 0; t0 < n; t0 += attnRows {
		nr := min(attnRows, n-t0)
		kmax := nkeys
		if causal {
			kmax = pos + t0 + nr // the tile's last row sees keys [0, pos+t0+nr)
		}
		w0 := int32(len(p.work) / attnWorkN)
		splits := int32(0)
		for k0 := 0; k0 < kmax; k0 += attnSplit {
			p.work = append(p.work, si, int32(row+t0), int32(nr), int32(k0), int32(min(k0+attnSplit, kmax)))
			splits++
		}
		for r := 0; r < nr; r++ {
			p.rows = append(p.rows, int32(row+t0+r), w0, splits, int32(r))
		}
	}
}

// run launches attn_partial and attn_combine for the plan; the caller has
// entered.
func (b *Backend) runAttention(p *attnPlan, out, q, k, v *buffer, heads, headDim, blockSize int, causal bool) {
	if headDim > attnMaxHD || headDim <= 0 {
		panic(fmt.Sprintf("cuda: attention head dimension %d outside [1, %d]", headDim, attnMaxHD))
	}
	nWork, nRows := len(p.work)/attnWorkN, len(p.rows)/attnRowN
	if nWork == 0 {
		return
	}
	part := b.attnBuf.get(b, int64(4*nWork*attnRows*heads*(headDim+2)))
	seqs, work, rows := b.stage.put(b, p.seqs), b.stage.put(b, p.work), b.stage.put(b, p.rows)
	blocks := b.stage.put(b, p.blocks)
	c := int64(0)
	if causal {
		c = 1
	}
	scale := float32(1 / math.Sqrt(float64(headDim)))
	b.launch(b.fn.attnPartial, nWork, heads, 128, 1, ptr(part), ptr(q.p), ptr(k.p), ptr(v.p),
		seqs, work, blocks, i64(heads), i64(headDim), i64(blockSize), uint64(c), f32(scale))
	b.launch(b.fn.attnCombine, nRows, heads, min(128, (headDim+31)&^31), 1, ptr(out.p), ptr(part), rows, i64(heads), i64(headDim))
}

// Attention computes dense, non-causal attention for seqs sequences of
// seqLen rows. With cuBLAS it runs as two strided-batched GEMMs per
// sequence around a softmax; with GEMMReference through the flash kernel.
func (b *Backend) Attention(out, q, k, v kernels.Buffer, seqs, seqLen, heads, headDim int) {
	if seqs == 0 || seqLen == 0 {
		return
	}
	b.enter()
	defer b.leave()
	o, qb, kb, vb := buf(out), buf(q), buf(k), buf(v)
	total := seqs * seqLen * heads * headDim
	for _, x := range []*buffer{o, qb, kb, vb} {
		checkRange("Attention", 0, total, x.n)
	}
	if b.blas != nil {
		b.denseAttentionBLAS(o, qb, kb, vb, seqs, seqLen, heads, headDim)
		return
	}
	p := &b.plan
	p.reset()
	for s := 0; s < seqs; s++ {
		p.add(s*seqLen, seqLen, 0, seqLen, nil, s*seqLen, false)
	}
	b.runAttention(p, o, qb, kb, vb, heads, headDim, 1, false)
}

// denseAttentionBLAS computes, per sequence, S = Q·Kᵀ·scale for all heads
// ([heads × seqLen × seqLen]), softmax over rows, then O = S·V.
func (b *Backend) denseAttentionBLAS(o, q, k, v *buffer, seqs, seqLen, heads, hd int) {
	width := heads * hd
	sq := int64(seqLen) * int64(seqLen)
	scores := b.attnBuf.get(b, 4*sq*int64(heads))
	scale := float32(1 / math.Sqrt(float64(hd)))
	for s := 0; s < seqs; s++ {
		base := s * seqLen * width
		// Column-major: C[j, i] = Σ_d K[j, d]·Q[i, d] per head, i.e. the
		// row-major [i × j] score matrix.
		b.must("Attention QKᵀ", b.blas.gemmBatched(true, false, seqLen, seqLen, hd, scale,
			cuPtr(k.at(base)), width, int64(hd), cuPtr(q.at(base)), width, int64(hd),
			0, scores, seqLen, sq, heads))
		b.launch(b.fn.softmax, heads*seqLen, 1, rowThreads, 1, ptr(scores), i64(seqLen))
		// Column-major: C[d, i] = Σ_j V[j, d]·P[i, j], written with
		// leading dimension width into the row-major output.
		b.must("Attention PV", b.blas.gemmBatched(false, false, hd, seqLen, seqLen, 1,
			cuPtr(v.at(base)), width, int64(hd), scores, seqLen, sq,
			0, cuPtr(o.at(base)), width, int64(hd), heads))
	}
}

// PagedAttention computes causal attention of each Seq's query rows over
// the paged caches kc and vc ([blocks × blockSize × heads·headDim]):
// flash-style over pages, split-K over ranges of 256 keys for long
// contexts (decode), merged in a second pass.
func (b *Backend) PagedAttention(out, q, kc, vc kernels.Buffer, seqs []kernels.Seq, heads, headDim, blockSize int) {
	if len(seqs) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	o, qb, kb, vb := buf(out), buf(q), buf(kc), buf(vc)
	width := heads * headDim
	slots := min(kb.n, vb.n) / (blockSize * width)
	p := &b.plan
	p.reset()
	for _, s := range seqs {
		checkRange("PagedAttention q", s.Row*width, s.Rows*width, min(qb.n, o.n))
		need := s.Pos + s.Rows
		if len(s.Blocks)*blockSize < need {
			panic(fmt.Sprintf("cuda: PagedAttention: %d blocks of %d cannot hold %d positions", len(s.Blocks), blockSize, need))
		}
		for _, blk := range s.Blocks[:ceilDiv(need, blockSize)] {
			if blk < 0 || int(blk) >= slots {
				panic(fmt.Sprintf("cuda: PagedAttention: block %d outside a cache of %d", blk, slots))
			}
		}
		p.add(s.Row, s.Rows, s.Pos, need, s.Blocks, 0, true)
	}
	b.runAttention(p, o, qb, kb, vb, heads, headDim, blockSize, true)
}

// cuPtr converts a device address back to a cu.DevicePtr.
func cuPtr(a uint64) cu.DevicePtr { return cu.DevicePtr(a) }
