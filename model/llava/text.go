package llava

import (
	"fmt"
	"math"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/sample"
)

// textState is the decoder's run state, grown to the largest step seen and
// reused (T = tokens in the step, C = logit rows computed, P of them picked
// as token ids for Greedy and Sample chunks).
type textState struct {
	x, xn    kernels.Buffer // [T × H] residual stream, normed copy
	delta    kernels.Buffer // [T × H] a sublayer's output, added to x by the next norm
	qkv      kernels.Buffer // [T × 3H] fused projections
	q, att   kernels.Buffer // [T × H] rotated queries, attention output
	gateUp   kernels.Buffer // [T × 2F] fused projections
	act      kernels.Buffer // [T × F] silu(gate) · up
	last     kernels.Buffer // [C × H] normed hidden states of the logit rows
	logits   kernels.Buffer // [C × V]
	out      []float32      // [C × V] the logits Forward reads back, reused by the next call
	rows     [][]float32    // [C − P] rows of out returned as logits
	picked   []int32        // [P] token ids returned for Greedy and Sample chunks
	draws    []kernels.Draw // [P] how each picked row is picked (temperature 0: greedy)
	sampling bool           // some draw samples (is not greedy)
	picker   sample.Picker  // the picks of a backend that cannot pick on its device
	ids      []int32        // [T] token ids, -1 for image rows
	pos      []int32        // [T] positions
	slots    []int32        // [T] KV cache slots
	lastRows []int32        // [C] rows whose logits are computed: the P picked ones first
	logitRow []int32        // rows returned as logits, before they join lastRows
	seqs     []kernels.Seq  // [len(batch)]
}

// checkChunk validates one chunk against the model and KV pool.
func (m *Model) checkChunk(i int, c *engine.Chunk) error {
	bs := m.opts.KVBlockSize
	if len(c.Tokens) == 0 {
		return fmt.Errorf("%w: chunk %d has no tokens", ErrChunk, i)
	}
	end := c.Pos + len(c.Tokens)
	if c.Pos < 0 || end > m.cfg.Text.MaxPos {
		return fmt.Errorf("%w: chunk %d covers positions [%d, %d), max %d", ErrChunk, i, c.Pos, end, m.cfg.Text.MaxPos)
	}
	if len(c.Blocks)*bs < end {
		return fmt.Errorf("%w: chunk %d: %d blocks of %d cannot hold %d positions", ErrChunk, i, len(c.Blocks), bs, end)
	}
	for _, b := range c.Blocks[:(end+bs-1)/bs] {
		if b < 0 || int(b) >= m.opts.KVBlocks {
			return fmt.Errorf("%w: chunk %d: block %d outside the pool of %d", ErrChunk, i, b, m.opts.KVBlocks)
		}
	}
	if err := checkSampling(c); err != nil {
		return fmt.Errorf("%w: chunk %d: %w", ErrChunk, i, err)
	}
	images := 0
	for _, t := range c.Tokens {
		switch {
		case t == engine.ImageToken:
			images++
		case t < 0 || int(t) >= m.cfg.Vocab:
			return fmt.Errorf("%w: chunk %d: token %d outside the vocabulary of %d", ErrChunk, i, t, m.cfg.Vocab)
		}
	}
	_, err := m.imageRows(i, c, images)
	return err
}

// checkSampling validates a Sample chunk: one logit row, not Greedy, and
// parameters sample.Params.Validate accepts at a temperature above 0, U in
// [0, 1).
func checkSampling(c *engine.Chunk) error {
	p := c.Sample
	if p == nil {
		return nil
	}
	if !c.Logits || c.AllLogits || c.Greedy {
		return fmt.Errorf("a Sample chunk returns its last logit row alone (Logits set, AllLogits and Greedy not)")
	}
	if err := (sample.Params{Temperature: p.Temperature, TopK: p.TopK, TopP: p.TopP}).Validate(); err != nil {
		return err
	}
	if p.Temperature == 0 {
		return fmt.Errorf("a Sample chunk's temperature must be above 0 (a greedy chunk is Greedy)")
	}
	if !(p.U >= 0 && p.U < 1) {
		return fmt.Errorf("sampling number %v outside [0, 1)", p.U)
	}
	return nil
}

// Forward runs the decoder over a batch of chunks, writing their keys and
// values into the KV cache, and returns the logit rows every chunk asks for
// (engine.Chunk.LogitRows), or their token ids for Greedy and Sample chunks, in
// memory the next call reuses. Every row is computed independently of the
// others (batch invariance). A lost device is an error wrapping
// engine.ErrDeviceLost (deviceLost).
func (m *Model) Forward(batch []engine.Chunk) (_ engine.Output, err error) {
	defer deviceLost(&err)
	tc := m.cfg.Text
	H, bs := tc.Hidden, m.opts.KVBlockSize
	st := &m.txt
	st.ids, st.pos, st.slots = st.ids[:0], st.pos[:0], st.slots[:0]
	st.lastRows, st.seqs, st.logitRow = st.lastRows[:0], st.seqs[:0], st.logitRow[:0]
	st.draws, st.sampling = st.draws[:0], false
	for i := range batch {
		c := &batch[i]
		if err := m.checkChunk(i, c); err != nil {
			return engine.Output{}, err
		}
		row := len(st.ids)
		st.seqs = append(st.seqs, kernels.Seq{Row: row, Rows: len(c.Tokens), Pos: c.Pos, Blocks: c.Blocks})
		for j, t := range c.Tokens {
			p := c.Pos + j
			if t == engine.ImageToken {
				t = -1 // embedImages fills the row
			}
			st.ids = append(st.ids, t)
			st.pos = append(st.pos, int32(p))
			st.slots = append(st.slots, c.Blocks[p/bs]*int32(bs)+int32(p%bs))
		}
		for j := len(c.Tokens) - c.LogitRows(); j < len(c.Tokens); j++ {
			if !c.Picked() {
				st.logitRow = append(st.logitRow, int32(row+j))
				continue
			}
			st.lastRows = append(st.lastRows, int32(row+j))
			d := kernels.Draw{}
			if p := c.Sample; p != nil {
				d = kernels.Draw{Temperature: p.Temperature, TopK: int32(min(p.TopK, math.MaxInt32)), TopP: p.TopP, U: p.U}
				st.sampling = true
			}
			st.draws = append(st.draws, d)
		}
	}
	P := len(st.lastRows)
	st.lastRows = append(st.lastRows, st.logitRow...)
	T, C := len(st.ids), len(st.lastRows)
	if T == 0 {
		return engine.Output{}, nil
	}
	be := m.be
	for _, b := range []*kernels.Buffer{&st.x, &st.xn, &st.delta, &st.q, &st.att} {
		grow(be, b, T*H)
	}
	grow(be, &st.qkv, 3*T*H)
	grow(be, &st.gateUp, 2*T*tc.FFN)
	grow(be, &st.act, T*tc.FFN)

	if s, ok := be.(stepStager); ok {
		s.StageStep(st.ids, st.pos, st.slots, st.seqs, tc.Heads, bs, st.pickDraws())
	}
	// Embeddings: token rows from the table, image rows from the chunks'
	// features.
	be.Embed(st.x, m.w.Embed, st.ids)
	m.embedImages(batch)

	// The layers. Each sublayer's output goes to delta, which the next
	// norm adds to the residual stream (AddRMSNorm); the first layer's
	// input norm has nothing to add yet, the final norm adds the last
	// layer's MLP.
	hd := H / tc.Heads
	for l := range m.w.Layers {
		L := &m.w.Layers[l]
		if l == 0 {
			be.RMSNorm(st.xn, st.x, L.AttnNorm, T, tc.Eps)
		} else {
			be.AddRMSNorm(st.xn, st.x, st.delta, L.AttnNorm, T, tc.Eps)
		}
		be.MatMul(st.qkv, st.xn, L.QKV, nil, T)
		be.RoPEStore(st.q, m.kc[l], m.vc[l], st.qkv, st.pos, st.slots, tc.Heads, hd, tc.RopeTheta)
		be.PagedAttention(st.att, st.q, m.kc[l], m.vc[l], st.seqs, tc.Heads, hd, bs)
		be.MatMul(st.delta, st.att, L.O, nil, T)

		be.AddRMSNorm(st.xn, st.x, st.delta, L.MLPNorm, T, tc.Eps)
		be.MatMul(st.gateUp, st.xn, L.GateUp, nil, T)
		be.SiLUMul(st.act, st.gateUp, T, tc.FFN)
		be.MatMul(st.delta, st.act, L.Down, nil, T)
	}
	if C == 0 {
		return engine.Output{}, nil
	}
	// The final norm over every row (row by row, so the same bits as over
	// the logit rows alone); a decode step returns every row's logits and
	// needs no gather.
	V := m.cfg.Vocab
	be.AddRMSNorm(st.xn, st.x, st.delta, m.w.Norm, T, tc.Eps)
	last := st.xn
	if !identity(st.lastRows) {
		grow(be, &st.last, C*H)
		be.GatherRows(st.last, st.xn, st.lastRows, H)
		last = st.last
	}
	grow(be, &st.logits, C*V)
	be.MatMul(st.logits, last, m.w.LMHead, nil, C)
	return m.readOut(P, C), nil
}

// stepStager is a backend that uploads a step's arrays (token ids,
// positions, KV slots, the attention plan of its sequences and the picks'
// draws) in one copy
// before the step's first kernel (the CUDA backend's StageStep); the
// step's calls that take them then upload nothing.
type stepStager interface {
	StageStep(ids, pos, slots []int32, seqs []kernels.Seq, heads, blockSize int, draws []kernels.Draw)
}

// pickDraws are the draws of the step's picked rows for a picker: nil when
// every one is greedy (nothing to upload).
func (st *textState) pickDraws() []kernels.Draw {
	if !st.sampling {
		return nil
	}
	return st.draws
}

// picker is a backend that picks tokens on its device and reads back the
// ids alone (the CUDA backend's Pick): with draws nil every row's argmax
// (sample.Argmax's rule), else each row by its Draw (temperature 0 greedy,
// else sample.Picker's rule at its U).
type picker interface {
	Pick(ids []int32, x kernels.Buffer, width int, draws []kernels.Draw)
}

// readOut returns the step's result from the C logit rows: the token ids
// of the first P (Greedy and Sample chunks, st.draws), picked on the device
// where the backend can, else from the rows read back; the other rows as
// logits.
func (m *Model) readOut(P, C int) engine.Output {
	st, V := &m.txt, m.cfg.Vocab
	if cap(st.out) < C*V {
		st.out = make([]float32, C*V)
	}
	flat := st.out[:C*V]
	st.rows = st.rows[:0]
	for i := range C {
		st.rows = append(st.rows, flat[i*V:(i+1)*V:(i+1)*V])
	}
	if cap(st.picked) < P {
		st.picked = make([]int32, P)
	}
	st.picked = st.picked[:P]
	if pk, ok := m.be.(picker); ok {
		pk.Pick(st.picked, st.logits, V, st.pickDraws())
		if C > P {
			m.be.Read(flat[P*V:], st.logits, P*V)
		}
	} else {
		m.be.Read(flat, st.logits, 0)
		for i, d := range st.draws {
			st.picked[i] = st.picker.Pick(st.rows[i], sample.Params{Temperature: d.Temperature, TopK: int(d.TopK), TopP: d.TopP}, d.U)
		}
	}
	return engine.Output{Logits: st.rows[P:], Tokens: st.picked}
}

// identity reports whether rows is 0, 1, …, len(rows)−1.
func identity(rows []int32) bool {
	for i, r := range rows {
		if int(r) != i {
			return false
		}
	}
	return true
}
