//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"gorgonia.org/cu"

	"github.com/pancap-serve/pancap/kernels"
)

// Attention geometry, as in kernels.cu.
const (
	attnRows    = 8   // AR: query rows per work item
	attnThreads = 128 // AT: threads per block
	attnMaxPart = 256 // APMAX: the longest key partition
	attnMinPart = 64  // the shortest partition, before rounding up to the block size
	attnMaxHD   = 128 // MAXHD
	attnSeqN    = 6   // int32 fields of AttnSeq
	attnWorkN   = 6   // int32 fields of AttnWork
	attnRowN    = 4   // int32 fields of AttnRow
)

// attnShapes are the (head dimension, block size) pairs with attention
// kernels of their own (ATTN_KERNEL and ATTN_TC_KERNEL in kernels.cu:
// 16-byte loads, constants folded; tensor cores for 16-bit caches of 128/16
// and 64/16), per cache type; any other shape runs the generic kernel.
var attnShapes = [][2]int{{128, 16}, {64, 16}, {16, 16}, {16, 8}}

// attnKey names an attention kernel: cache type, head dimension and block
// size (0, 0 for the generic kernel).
type attnKey struct {
	dt     kernels.DType
	hd, bs int
}

// name is the kernel's name in kernels.cu.
func (k attnKey) name() string {
	t := map[kernels.DType]string{kernels.F32: "f32", kernels.BF16: "bf16", kernels.F16: "f16"}[k.dt]
	if k.hd == 0 {
		return "attn_" + t + "_any"
	}
	return fmt.Sprintf("attn_%s_%d_%d", t, k.hd, k.bs)
}

// attnKeys lists every attention kernel New loads.
func attnKeys() []attnKey {
	var keys []attnKey
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.F16} {
		for _, s := range attnShapes {
			keys = append(keys, attnKey{dt, s[0], s[1]})
		}
		keys = append(keys, attnKey{dt: dt})
	}
	return keys
}

// attnKernel is the kernel for a cache of type dt, head dimension hd and
// block size bs; bs 0 (dense keys, no blocks) takes any kernel of the head
// dimension.
func (b *Backend) attnKernel(dt kernels.DType, hd, bs int) function {
	for _, s := range attnShapes {
		if s[0] == hd && (s[1] == bs || bs == 0) {
			return b.fn.attn[attnKey{dt, hd, s[1]}]
		}
	}
	return b.fn.attn[attnKey{dt: dt}]
}

// attnGeom is what a row's key partitions depend on besides its key count:
// constants of the model and the device, never the batch.
type attnGeom struct {
	heads, align, sms int
}

// part is the partition size of a row that sees keys keys: partitions
// enough for heads·partitions work items to fill every multiprocessor
// twice at batch 1, at least attnMinPart keys (a partition's fixed cost is
// a block launch and a partial to merge), a multiple of the block size
// align (each block's table entry read once, its keys never split) and at
// most attnMaxPart (the scores of a partition live in shared memory).
func (g attnGeom) part(keys int) int {
	p := max(ceilDiv(keys*g.heads, 2*g.sms), attnMinPart)
	if g.align > attnMaxPart {
		return attnMaxPart // blocks longer than a partition: aligned to nothing
	}
	return min(ceilDiv(p, g.align)*g.align, attnMaxPart/g.align*g.align)
}

// attnPlan is the host-side description of one attention call: sequences,
// work items (one block each, per head) and the rows with several
// partitions (merged by attn_combine), flattened to int32 for staging.
type attnPlan struct {
	seqs, work, rows, blocks []int32
}

func (p *attnPlan) reset() {
	p.seqs, p.work, p.rows, p.blocks = p.seqs[:0], p.work[:0], p.rows[:0], p.blocks[:0]
}

// add appends a sequence whose query rows [row, row+n) sit at positions
// pos…; a causal row at position P sees keys [0, P], a non-causal one
// [0, nkeys). Keys come through blocks (paged) or from rows keyBase+p. A
// work item takes up to attnRows consecutive rows of one partition size
// and one partition [s·part, (s+1)·part) of their keys: each row's
// partitions depend on its own key count alone.
func (p *attnPlan) add(row, n, pos, nkeys int, blocks []int32, keyBase int, causal bool, g attnGeom) {
	si := int32(len(p.seqs) / attnSeqN)
	blkOff := int32(-1)
	if blocks != nil {
		blkOff = int32(len(p.blocks))
		p.blocks = append(p.blocks, blocks...)
	}
	p.seqs = append(p.seqs, int32(row), int32(n), int32(pos), int32(nkeys), blkOff, int32(keyBase))
	keys := func(t int) int {
		if causal {
			return pos + t + 1
		}
		return nkeys
	}
	for t0 := 0; t0 < n; {
		part := g.part(keys(t0))
		t1 := t0 + 1
		for t1 < n && t1-t0 < attnRows && g.part(keys(t1)) == part {
			t1++
		}
		kmax := keys(t1 - 1) // the last row sees the most keys
		w0 := int32(len(p.work) / attnWorkN)
		for k0 := 0; k0 < kmax; k0 += part {
			p.work = append(p.work, si, int32(row+t0), int32(t1-t0), int32(k0), int32(min(k0+part, kmax)), int32(part))
		}
		for t := t0; t < t1; t++ {
			if ns := ceilDiv(keys(t), part); ns > 1 {
				p.rows = append(p.rows, int32(row+t), w0, int32(ns), int32(t-t0))
			}
		}
		t0 = t1
	}
}

// runAttention launches the attention kernel for the plan over keys and
// values of type dt, then attn_combine for the rows with several
// partitions; the caller has entered.
func (b *Backend) runAttention(p *attnPlan, out, q, k, v *buffer, dt kernels.DType, heads, headDim, blockSize int, causal bool) {
	if headDim > attnMaxHD || headDim <= 0 {
		panic(fmt.Sprintf("cuda: attention head dimension %d outside [1, %d]", headDim, attnMaxHD))
	}
	nWork, nRows := len(p.work)/attnWorkN, len(p.rows)/attnRowN
	if nWork == 0 {
		return
	}
	seqs, work, blocks, rows := b.stagePlan(p)
	var part cu.DevicePtr
	if nRows > 0 {
		part = b.attnBuf.get(b, int64(4*nWork*attnRows*heads*(headDim+2)))
	}
	c := int64(0)
	if causal {
		c = 1
	}
	scale := float32(1 / math.Sqrt(float64(headDim)))
	b.launch(b.attnKernel(dt, headDim, blockSize), nWork, heads, attnThreads, 1, ptr(out.p), ptr(part), ptr(q.p),
		ptr(k.p), ptr(v.p), seqs, work, blocks, i64(heads), i64(headDim), i64(max(blockSize, 1)), uint64(c), f32(scale))
	if nRows > 0 {
		b.launch(b.fn.attnCombine, nRows, heads, min(128, (headDim+31)&^31), 1, ptr(out.p), ptr(part),
			rows, i64(heads), i64(headDim))
	}
}

// stagePlan stages p's arrays (attn_combine's rows only when some row has
// several partitions) and returns their device addresses.
func (b *Backend) stagePlan(p *attnPlan) (seqs, work, blocks, rows uint64) {
	seqs, work, blocks = b.stage.put(b, p.seqs), b.stage.put(b, p.work), b.stage.put(b, p.blocks)
	if len(p.rows) > 0 {
		rows = b.stage.put(b, p.rows)
	}
	return seqs, work, blocks, rows
}

// Attention computes dense, non-causal attention for seqs sequences of
// seqLen rows. With cuBLAS it runs as two strided-batched GEMMs per
// sequence around a softmax; with GEMMReference through the attention
// kernel (exact float32, as over a float32 cache).
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
	g := attnGeom{heads: heads, align: 1, sms: b.sms}
	for s := 0; s < seqs; s++ {
		p.add(s*seqLen, seqLen, 0, seqLen, nil, s*seqLen, false, g)
	}
	b.runAttention(p, o, qb, kb, vb, kernels.F32, heads, headDim, 0, false)
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
// the paged caches kc and vc ([blocks × blockSize × heads·headDim], float32
// or 16-bit, widened exactly): split-K over key partitions sized from each
// row's own length (attnGeom.part), merged in partition order, so a row's
// result is bitwise the same in any batch and any chunking of its
// sequence, decode or prefill. The kernel depends on the cache type and
// geometry alone, never on the number of rows (attnKernel): a 16-bit cache
// of head dimension 64 or 128 and block size 16 runs on tensor cores (Q and
// the probabilities split into 16-bit terms, float32 accumulation),
// everything else — every float32 cache — on CUDA cores in float32. One
// kernel for one row and for many is what keeps a decode row bitwise equal
// to the same row in a prefill chunk (speculative verification and chunked
// prefill rely on it).
func (b *Backend) PagedAttention(out, q, kc, vc kernels.Buffer, seqs []kernels.Seq, heads, headDim, blockSize int) {
	if len(seqs) == 0 {
		return
	}
	b.enter()
	defer b.leave()
	o, qb := buf(out), buf(q)
	kb, vb := kvCaches("PagedAttention", kc, vc)
	width := heads * headDim
	slots := min(kb.n, vb.n) / (blockSize * width)
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
	}
	b.runAttention(b.pagedPlan(seqs, heads, blockSize), o, qb, kb, vb, kb.cacheType(), heads, headDim, blockSize, true)
}

// pagedPlan is the plan of a PagedAttention call over seqs, in b.plan.
func (b *Backend) pagedPlan(seqs []kernels.Seq, heads, blockSize int) *attnPlan {
	p := &b.plan
	p.reset()
	g := attnGeom{heads: heads, align: blockSize, sms: b.sms}
	for _, s := range seqs {
		p.add(s.Row, s.Rows, s.Pos, s.Pos+s.Rows, s.Blocks, 0, true, g)
	}
	return p
}

// StageStep stages a decoder step's arrays (the token ids, positions and
// KV slots, the attention plan of seqs and, when not nil, the draws of its
// Pick) so that they go up in one copy before the step's first kernel: the
// step's Embed, RoPEStore, PagedAttention and Pick calls find the same
// arrays staged (staging.put) instead of each uploading its own.
func (b *Backend) StageStep(ids, pos, slots []int32, seqs []kernels.Seq, heads, blockSize int, draws []kernels.Draw) {
	b.enter()
	defer b.leave()
	for _, v := range [][]int32{ids, pos, slots} {
		b.stage.put(b, v)
	}
	b.stagePlan(b.pagedPlan(seqs, heads, blockSize))
	if draws != nil {
		b.stage.put(b, drawWords(draws))
	}
}

// cuPtr converts a device address back to a cu.DevicePtr.
func cuPtr(a uint64) cu.DevicePtr { return cu.DevicePtr(a) }
