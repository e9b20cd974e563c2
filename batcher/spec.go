package batcher

// Speculative decoding by prompt lookup. A greedy decoding sequence guesses
// its next tokens from its own context (the stage prompt with its hand-off
// list, and the text generated so far): where the last few tokens occurred
// before, the tokens that followed them then are the draft. The draft runs
// as extra rows of the sequence's decode chunk (engine.Chunk.AllLogits);
// the longest prefix of it that greedy decoding reproduces is accepted, with
// the next token from the verification logits, and the KV of the rejected
// rows is rolled back. Every emitted token is the argmax of logits that are
// bitwise those of a one-row decode step (the engine's rows are batch
// invariant), so outputs are the same with speculation on or off.

import (
	"slices"

	"github.com/pancap-serve/pancap/engine"
)

// Drafting limits.
const (
	// specMaxNgram is the longest context suffix looked up; shorter ones
	// are tried when it does not occur earlier.
	specMaxNgram = 4
	// specStartTokens is a new sequence's draft length.
	specStartTokens = 4
	// specMaxPause is the most steps a sequence drafts nothing after
	// drafts that were all rejected (the pause doubles with each such
	// verification).
	specMaxPause = 16
)

// drafter is one sequence's speculation state: its draft length, adapted
// to its recent acceptance, and where in the context its last accepted
// draft was copied from.
type drafter struct {
	k     int // tokens to draft next, ≥ 1
	max   int // bound on k
	src   int // context index after the last accepted copied token; 0: none yet
	from  int // context index the pending draft was copied from
	pause int // steps left without drafting
	miss  int // verifications in a row that accepted nothing
}

// newDrafter returns the state of a sequence that drafts up to max tokens a
// step.
func newDrafter(max int) *drafter {
	return &drafter{k: min(specStartTokens, max), max: max}
}

// draft proposes up to min(k, limit) tokens to follow ctx, copied from
// after an earlier occurrence of ctx's longest suffix (of at most
// specMaxNgram tokens) that has one: the first occurrence at or after the
// end of the last accepted copy, so a list copied item by item is followed
// in order, else the latest one; the draft stops before an image position.
// It returns nil when nothing matches or while the drafter pauses.
func (d *drafter) draft(ctx []int32, limit int) []int32 {
	if d.pause > 0 {
		d.pause--
		return nil
	}
	limit = min(limit, d.k)
	if limit <= 0 || len(ctx) < 2 {
		return nil
	}
	for n := min(specMaxNgram, len(ctx)-1); n >= 1; n-- {
		suffix := ctx[len(ctx)-n:]
		at := -1 // index just after the chosen occurrence
		for i := len(ctx) - 1; i >= n; i-- {
			if !slices.Equal(ctx[i-n:i], suffix) {
				continue
			}
			after := d.src > 0 && i >= d.src
			if at < 0 || after {
				at = i
			}
			if !after {
				break // the latest occurrence, or the first after the copy point
			}
		}
		if at < 0 {
			continue
		}
		end := min(at+limit, len(ctx))
		if img := slices.Index(ctx[at:end], engine.ImageToken); img >= 0 {
			end = at + img // image positions are no tokens to draft
		}
		if end == at {
			return nil
		}
		d.from = at
		return ctx[at:end:end]
	}
	return nil
}

// update adapts the draft length to a verification that accepted accepted
// of the drafted tokens of the last draft: longer after a full acceptance,
// one past the accepted run otherwise, and a pause that doubles with each
// verification accepting nothing. The copy point moves to the end of the
// accepted run.
func (d *drafter) update(drafted, accepted int) {
	d.src = d.from + accepted
	switch {
	case accepted == drafted:
		d.k = min(d.k+2, d.max)
		d.miss = 0
	case accepted == 0:
		d.k = 1
		d.pause = min(1<<d.miss, specMaxPause)
		d.miss++
	default:
		d.k = min(accepted+1, d.max)
		d.miss = 0
	}
}

// newDrafter returns the speculation state of a new sequence of r: nil
// unless speculation is on and r decodes greedily (its accepted tokens
// would otherwise not be the ones sampling draws).
func (b *Batcher) newDrafter(r *request) *drafter {
	if !b.cfg.Speculative || !r.params.Greedy() {
		return nil
	}
	return newDrafter(b.cfg.SpeculativeTokens)
}

// verifyChunk returns the decode chunk of s with a draft of at most spare
// tokens appended, its KV blocks reserved, when s speculates, is decoding
// and finds a draft. Drafts never outrun the stage's token limit, and never
// preempt another sequence for blocks: without free blocks s decodes
// plainly.
func (b *Batcher) verifyChunk(s *seq, spare int) (engine.Chunk, bool) {
	if s.spec == nil || spare <= 0 || len(s.tokens)-s.computed != 1 {
		return engine.Chunk{}, false
	}
	draft := s.spec.draft(s.tokens, min(spare, s.maxNew-len(s.generated())-1))
	if len(draft) == 0 || b.kv.Reserve(s.kv, s.computed+1+len(draft)) != nil {
		return engine.Chunk{}, false
	}
	tokens := append(s.tokens[s.computed:s.computed+1:s.computed+1], draft...)
	return engine.Chunk{Blocks: s.kv.Blocks(), Pos: s.computed, Tokens: tokens, AllLogits: true}, true
}

// verify consumes the logits of a verification chunk of s (its last token
// and a draft, one row each): the draft's longest prefix that the sampler
// reproduces is accepted, the blocks reserved for the rejected rest are
// released, and the accepted tokens and the one after them are emitted one
// by one, as decoding them step by step would have.
func (b *Batcher) verify(s *seq, tokens []int32, rows [][]float32) {
	drafted := len(tokens) - 1
	ids := make([]int32, 0, len(rows))
	for _, row := range rows {
		id := s.sampler.Next(row)
		ids = append(ids, id)
		if len(ids) > drafted || id != tokens[len(ids)] {
			break
		}
	}
	accepted := len(ids) - 1
	b.kv.Append(s.kv, tokens[:1+accepted], b.cfg.ChainReuse)
	b.kv.Trim(s.kv)
	s.computed += 1 + accepted
	s.spec.update(drafted, accepted)
	label := stageLabel(s.stage)
	b.m.specDrafts.WithLabelValues(label).Inc()
	b.m.specDraftTokens.WithLabelValues(label).Add(float64(drafted))
	b.m.specAccepted.WithLabelValues(label).Add(float64(accepted))
	for _, id := range ids {
		if !b.onToken(s, id) {
			return
		}
	}
}
