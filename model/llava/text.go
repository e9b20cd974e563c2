package llava

import (
	"fmt"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
)

// textState is the decoder's run state, grown to the largest step seen and
// reused (T = tokens in the step, C = logit rows returned).
type textState struct {
	x, xn    kernels.Buffer // [T × H] residual stream, normed copy
	q, k, v  kernels.Buffer // [T × H]
	att      kernels.Buffer // [T × H]
	gate, up kernels.Buffer // [T × F]
	last     kernels.Buffer // [C × H] hidden states of the logit rows
	logits   kernels.Buffer // [C × V]
	out      []float32      // [C × V] the logits Forward returns, reused by the next call
	rows     [][]float32    // [C] rows of out
	ids      []int32        // [T] token ids, -1 for image rows
	pos      []int32        // [T] positions
	slots    []int32        // [T] KV cache slots
	lastRows []int32        // [C] rows whose logits are returned
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
// (engine.Chunk.LogitRows), in memory the next call reuses. Every row is
// computed independently of the others (batch invariance). A lost device
// is an error wrapping engine.ErrDeviceLost (deviceLost).
func (m *Model) Forward(batch []engine.Chunk) (_ [][]float32, err error) {
	defer deviceLost(&err)
	tc := m.cfg.Text
	H, bs := tc.Hidden, m.opts.KVBlockSize
	st := &m.txt
	st.ids, st.pos, st.slots = st.ids[:0], st.pos[:0], st.slots[:0]
	st.lastRows, st.seqs = st.lastRows[:0], st.seqs[:0]
	for i := range batch {
		c := &batch[i]
		if err := m.checkChunk(i, c); err != nil {
			return nil, err
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
			st.lastRows = append(st.lastRows, int32(row+j))
		}
	}
	T, C := len(st.ids), len(st.lastRows)
	if T == 0 {
		return nil, nil
	}
	be := m.be
	for _, b := range []*kernels.Buffer{&st.x, &st.xn, &st.q, &st.k, &st.v, &st.att} {
		grow(be, b, T*H)
	}
	grow(be, &st.gate, T*tc.FFN)
	grow(be, &st.up, T*tc.FFN)

	// Embeddings: token rows from the table, image rows from the chunks'
	// features.
	be.Embed(st.x, m.w.Embed, st.ids)
	m.embedImages(batch)

	hd := H / tc.Heads
	for l := range m.w.Layers {
		L := &m.w.Layers[l]
		be.RMSNorm(st.xn, st.x, L.AttnNorm, T, tc.Eps)
		be.MatMul(st.q, st.xn, L.Q, nil, T)
		be.MatMul(st.k, st.xn, L.K, nil, T)
		be.MatMul(st.v, st.xn, L.V, nil, T)
		be.RoPE(st.q, st.pos, tc.Heads, hd, tc.RopeTheta)
		be.RoPE(st.k, st.pos, tc.Heads, hd, tc.RopeTheta)
		be.ScatterRows(m.kc[l], st.k, st.slots, H)
		be.ScatterRows(m.vc[l], st.v, st.slots, H)
		be.PagedAttention(st.att, st.q, m.kc[l], m.vc[l], st.seqs, tc.Heads, hd, bs)
		be.MatMul(st.xn, st.att, L.O, nil, T)
		be.Add(st.x, st.x, st.xn, T*H)

		be.RMSNorm(st.xn, st.x, L.MLPNorm, T, tc.Eps)
		be.MatMul(st.gate, st.xn, L.Gate, nil, T)
		be.MatMul(st.up, st.xn, L.Up, nil, T)
		be.SiLUMul(st.gate, st.gate, st.up, T*tc.FFN)
		be.MatMul(st.xn, st.gate, L.Down, nil, T)
		be.Add(st.x, st.x, st.xn, T*H)
	}
	if C == 0 {
		return nil, nil
	}
	V := m.cfg.Vocab
	grow(be, &st.last, C*H)
	grow(be, &st.logits, C*V)
	be.GatherRows(st.last, st.x, st.lastRows, H)
	be.RMSNorm(st.last, st.last, m.w.Norm, C, tc.Eps)
	be.MatMul(st.logits, st.last, m.w.LMHead, nil, C)
	if cap(st.out) < C*V {
		st.out = make([]float32, C*V)
	}
	flat := st.out[:C*V]
	st.rows = st.rows[:0]
	for i := range C {
		st.rows = append(st.rows, flat[i*V:(i+1)*V:(i+1)*V])
	}
	be.Read(flat, st.logits, 0)
	return st.rows, nil
}
