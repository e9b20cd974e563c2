package llava

import (
	"fmt"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/sample"
)

// textState is the decoder's run state, grown to the largest step seen and
// reused (T = tokens in the step, C = logit rows computed, G of them for
// Greedy chunks).
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
	rows     [][]float32    // [C − G] rows of out returned as logits
	picked   []int32        // [G] token ids returned for Greedy chunks
	ids      []int32        // [T] token ids, -1 for image rows
	pos      []int32        // [T] positions
	slots    []int32        // [T] KV cache slots
	lastRows []int32        // [C] rows whose logits are computed: the G greedy ones first
	sampled  []int32        // rows of non-Greedy chunks, before they join lastRows
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

// Forward runs the decoder over a batch of chunks, writing their keys and
// values into the KV cache, and returns the logit rows every chunk asks for
// (engine.Chunk.LogitRows), or their greedy token ids for Greedy chunks, in
// memory the next call reuses. Every row is computed independently of the
// others (batch invariance). A lost device is an error wrapping
// engine.ErrDeviceLost (deviceLost).
func (m *Model) Forward(batch []engine.Chunk) (_ engine.Output, err error) {
	defer deviceLost(&err)
	tc := m.cfg.Text
	H, bs := tc.Hidden, m.opts.KVBlockSize
	st := &m.txt
	st.ids, st.pos, st.slots = st.ids[:0], st.pos[:0], st.slots[:0]
	st.lastRows, st.seqs, st.sampled = st.lastRows[:0], st.seqs[:0], st.sampled[:0]
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
			if c.Greedy {
				st.lastRows = append(st.lastRows, int32(row+j))
			} else {
				st.sampled = append(st.sampled, int32(row+j))
			}
		}
	}
	G := len(st.lastRows)
	st.lastRows = append(st.lastRows, st.sampled...)
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
	return m.readOut(G, C), nil
}

// argmaxer is a backend that picks each row's largest logit on its device
// with sample.Argmax's rule and reads back the ids alone (the CUDA
// backend's Argmax).
type argmaxer interface {
	Argmax(ids []int32, x kernels.Buffer, width int)
}

// readOut returns the step's result from the C logit rows: the token ids
// of the first G (Greedy chunks), picked on the device where the backend
// can, else from the rows read back; the other rows as logits.
func (m *Model) readOut(G, C int) engine.Output {
	st, V := &m.txt, m.cfg.Vocab
	if cap(st.out) < C*V {
		st.out = make([]float32, C*V)
	}
	flat := st.out[:C*V]
	st.rows = st.rows[:0]
	for i := range C {
		st.rows = append(st.rows, flat[i*V:(i+1)*V:(i+1)*V])
	}
	if cap(st.picked) < G {
		st.picked = make([]int32, G)
	}
	st.picked = st.picked[:G]
	if a, ok := m.be.(argmaxer); ok {
		a.Argmax(st.picked, st.logits, V)
		m.be.Read(flat[G*V:], st.logits, G*V)
	} else {
		m.be.Read(flat, st.logits, 0)
		for i, row := range st.rows[:G] {
			st.picked[i] = sample.Argmax(row)
		}
	}
	return engine.Output{Logits: st.rows[G:], Tokens: st.picked}
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
