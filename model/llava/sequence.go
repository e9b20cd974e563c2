package llava

import (
	"fmt"
	"slices"

	"github.com/pancap-serve/pancap/engine"
)

// ExpandImageTokens returns ids with every engine.ImageToken repeated n
// times: LLaVA's input ids hold one placeholder per image, a Chunk one per
// image feature row.
func ExpandImageTokens(ids []int32, n int) []int32 {
	out := make([]int32, 0, len(ids)+n)
	for _, id := range ids {
		if id != engine.ImageToken {
			out = append(out, id)
			continue
		}
		for range n {
			out = append(out, engine.ImageToken)
		}
	}
	return out
}

// Sequence drives one sequence through the model outside a batcher (the
// generate command, tests): it owns the KV blocks 0 … n−1, so only one
// Sequence may be in use at a time and not while a batcher uses the model.
type Sequence struct {
	m      *Model
	blocks []int32
	pos    int
}

// NewSequence starts a sequence at position 0 over as many KV blocks as one
// full context needs (or the whole pool when smaller).
func (m *Model) NewSequence() *Sequence {
	n := min(m.opts.KVBlocks, (m.cfg.Text.MaxPos+m.opts.KVBlockSize-1)/m.opts.KVBlockSize)
	s := &Sequence{m: m, blocks: make([]int32, n)}
	for i := range s.blocks {
		s.blocks[i] = int32(i)
	}
	return s
}

// Pos is the number of positions fed so far.
func (s *Sequence) Pos() int { return s.pos }

// Feed runs tokens in chunks of at most chunk tokens (0: all at once) and
// returns the logits of the last position. Its ImageTokens take the rows of
// image in order, from row 0 (nil when there are none).
func (s *Sequence) Feed(tokens []int32, image engine.Features, chunk int) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%w: nothing to feed", ErrChunk)
	}
	if chunk <= 0 {
		chunk = len(tokens)
	}
	var logits []float32
	row := 0 // next row of image
	for lo := 0; lo < len(tokens); lo += chunk {
		part := tokens[lo:min(lo+chunk, len(tokens))]
		images := 0
		for _, t := range part {
			if t == engine.ImageToken {
				images++
			}
		}
		c := engine.Chunk{Blocks: s.blocks, Pos: s.pos, Tokens: part, Logits: lo+len(part) == len(tokens)}
		if images > 0 {
			c.Image, c.ImageRow = image, row
		}
		out, err := s.m.Forward([]engine.Chunk{c})
		if err != nil {
			return nil, err
		}
		row += images
		s.pos += len(part)
		if len(out.Logits) == 1 {
			logits = slices.Clone(out.Logits[0]) // the model reuses out
		}
	}
	return logits, nil
}
