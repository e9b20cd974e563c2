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

// Drafting parameters.
const (
	// specMaxNgram is the longest context suffix looked up; shorter ones
	// are tried when it does not occur earlier.
	specMaxNgram = 4
	// specStartTokens is a new sequence's draft length.
	specStartTokens = 4
	// specStepRows is a step's fixed cost in rows: a step of T rows takes
	// about (specStepRows + T) times a row's cost. The embedded synth
	// model on the CPU backend (2 cores) takes 1.05 ms for one row, 1.48
	// ms for 3 and 3.7 ms for 9 at a 700-token context: 0.35 ms a row and
	// 0.7 ms a step. A draft token is worth verifying when the chance that
	// it is accepted exceeds what its row costs relative to a token's
	// share of the step, rowCost(B) for B decoding sequences.
	specStepRows = 2
	// specProbeEvery is how often (in steps) a sequence drafts one token
	// when its stage's acceptance says drafts are not worth their rows,
	// so that the statistics follow a change.
	specProbeEvery = 8
	// specStatsCap bounds the counts of specStats: beyond it they are
	// halved, so old verifications weigh less.
	specStatsCap = 512
)

// drafter is one sequence's speculation state: its draft length, adapted
// to its recent acceptance, and where in the context its last accepted
// draft was copied from.
type drafter struct {
	k     int // tokens to draft next, ≥ 1
	max   int // bound on k
	src   int // context index after the last accepted copied token
	from  int // context index the pending draft was copied from
	quiet int // steps since the last draft
	// run is set while the sequence copies: its last verification
	// accepted its whole draft.
	run bool
	// class is the statistics class of the pending draft (see specClasses).
	class int
	// past is set when the pending draft comes from an earlier output
	// (outputs), not from the sequence's context.
	past bool
}

// Drafts fall in classes whose acceptance differs a lot, each with its own
// statistics: drafts of a sequence in a run (copying), and outside a run
// those from a match of one token and those from a longer match; and
// drafts from earlier outputs of the stage.
const (
	specOneToken = iota // not in a run, matched 1 token
	specLonger          // not in a run, matched 2 or more
	specInRun           // the last draft was accepted whole
	specPast            // copied from an earlier output of the stage
	specClasses
)

// Earlier outputs that drafts copy from when the sequence's own context
// offers no match longer than a token: the stages' outputs share their
// phrasing (the caption's sentence patterns), not only what the prompt
// holds.
const (
	specPastOutputs = 16   // outputs kept per stage
	specPastTokens  = 1024 // tokens kept of each
)

// outputs holds the latest finished outputs of one stage, as a ring.
type outputs struct {
	ids  [][]int32
	next int
}

// add keeps a copy of the first specPastTokens of ids, replacing the oldest
// output once specPastOutputs are kept.
func (o *outputs) add(ids []int32) {
	ids = slices.Clone(ids[:min(len(ids), specPastTokens)])
	if len(o.ids) < specPastOutputs {
		o.ids = append(o.ids, ids)
		return
	}
	o.ids[o.next] = ids
	o.next = (o.next + 1) % specPastOutputs
}

// draft proposes up to limit tokens to follow ctx from the outputs, newest
// first: what followed the first occurrence of ctx's longest suffix of 2 to
// specMaxNgram tokens; nil when none occurs.
func (o *outputs) draft(ctx []int32, limit int) []int32 {
	if limit <= 0 {
		return nil
	}
	for n := min(specMaxNgram, len(ctx)); n >= 2; n-- {
		suffix := ctx[len(ctx)-n:]
		for j := range o.ids {
			out := o.ids[(o.next+len(o.ids)-1-j)%len(o.ids)]
			for i := n; i < len(out); i++ {
				if slices.Equal(out[i-n:i], suffix) {
					end := min(i+limit, len(out))
					return out[i:end:end]
				}
			}
		}
	}
	return nil
}

// newDrafter returns the state of a sequence that drafts up to max tokens a
// step.
func newDrafter(max int) *drafter {
	return &drafter{k: min(specStartTokens, max), max: max}
}

// draft proposes up to limit tokens to follow ctx, copied from after an
// earlier occurrence of ctx's longest suffix (of at most specMaxNgram
// tokens) that has one: the first occurrence at or after the end of the
// last accepted copy (the start of the context at first), so that a list
// of the prompt is copied item by item in order, else the latest one; the
// draft stops before an image position. It returns nil when nothing
// matches.
func (d *drafter) draft(ctx []int32, limit int) []int32 {
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
			if at < 0 || i >= d.src {
				at = i
			}
			if i < d.src {
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
		switch {
		case d.run:
			d.class = specInRun
		case n >= 2:
			d.class = specLonger
		default:
			d.class = specOneToken
		}
		return ctx[at:end:end]
	}
	return nil
}

// update adapts the draft length to a verification that accepted accepted
// of the drafted tokens of the last draft: the longest after a full
// acceptance (the statistics of runs bound it then), one past the accepted
// run after a partial one, half as long after a draft accepting nothing.
// The copy point moves to the end of the accepted run.
func (d *drafter) update(drafted, accepted int) {
	if !d.past {
		d.src = d.from + accepted
	}
	d.run = accepted == drafted
	switch {
	case accepted == drafted:
		d.k = d.max
	case accepted == 0:
		d.k = max(1, d.k/2)
	default:
		d.k = min(accepted+1, d.max)
	}
}

// specStats are the verification outcomes by draft position of one stage's
// drafts of one class: tried[i] counts the
// drafts whose token i was verified with tokens 0…i−1 accepted,
// accepted[i] those where token i was accepted too.
type specStats struct {
	tried, accepted []float64
}

// newSpecStats returns empty statistics for drafts of up to n tokens.
func newSpecStats(n int) specStats {
	return specStats{tried: make([]float64, n), accepted: make([]float64, n)}
}

// worth returns the longest draft length up to n whose last token is
// likely enough accepted to be worth its row: P(tokens 0…k−1 accepted) >
// cost. Each conditional rate is estimated as (accepted + 2·prior) /
// (tried + 2), the prior being ½ for the first token and the previous
// position's rate after it: a position drafts have not reached yet is
// taken to do as well as the one before, so that drafts can grow.
func (st *specStats) worth(n int, cost float64) int {
	p, prior := 1.0, 0.5
	for k := range min(n, len(st.tried)) {
		rate := (st.accepted[k] + 2*prior) / (st.tried[k] + 2)
		if p *= rate; p <= cost {
			return k
		}
		prior = rate
	}
	return min(n, len(st.tried))
}

// record counts a verification that accepted accepted of drafted tokens.
func (st *specStats) record(drafted, accepted int) {
	for i := range min(accepted+1, drafted) {
		st.tried[i]++
		if i < accepted {
			st.accepted[i]++
		}
		if st.tried[i] > specStatsCap {
			st.tried[i] /= 2
			st.accepted[i] /= 2
		}
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

// verifyChunk returns the decode chunk of s with a draft appended, its KV
// blocks reserved, when s speculates, is decoding and finds a draft. The
// draft takes at most spare rows, at most the sequence's draft length, and
// only the tokens the statistics of its stage and class say are worth
// their rows at a row cost of cost (but one token every specProbeEvery
// steps). Drafts never outrun the stage's token
// limit, and never preempt another sequence for blocks: without free
// blocks s decodes plainly.
func (b *Batcher) verifyChunk(s *seq, spare int, cost float64) (engine.Chunk, bool) {
	if s.spec == nil || spare <= 0 || len(s.tokens)-s.computed != 1 {
		return engine.Chunk{}, false
	}
	limit := min(spare, s.maxNew-len(s.generated())-1, s.spec.k)
	draft := s.spec.draft(s.tokens, limit)
	s.spec.past = false
	if len(draft) == 0 || s.spec.class == specOneToken {
		if past := b.specPast[s.stage].draft(s.tokens, limit); len(past) > 0 {
			draft, s.spec.class, s.spec.past = past, specPast, true
		}
	}
	n := b.stats(s).worth(len(draft), cost)
	if s.spec.quiet++; n == 0 && s.spec.quiet >= specProbeEvery {
		n = min(len(draft), 1) // a probe
	}
	draft = draft[:n]
	if n == 0 || b.kv.Reserve(s.kv, s.computed+1+n) != nil {
		return engine.Chunk{}, false
	}
	s.spec.quiet = 0
	tokens := append(s.tokens[s.computed:s.computed+1:s.computed+1], draft...)
	return engine.Chunk{Blocks: s.kv.Blocks(), Pos: s.computed, Tokens: tokens, AllLogits: true,
		Greedy: s.sampler.Params().Greedy()}, true
}

// verify consumes the engine's greedy picks of a verification chunk of s
// (its last token and a draft, one row each): the draft's longest prefix
// that the picks reproduce is accepted, the blocks reserved for the rejected rest are
// released, and the accepted tokens and the one after them are emitted one
// by one, as decoding them step by step would have.
func (b *Batcher) verify(s *seq, tokens []int32, picked []int32) {
	drafted := len(tokens) - 1
	ids := make([]int32, 0, len(tokens))
	for j := range tokens {
		id := picked[j]
		ids = append(ids, id)
		if len(ids) > drafted || id != tokens[len(ids)] {
			break
		}
	}
	accepted := len(ids) - 1
	b.kv.Append(s.kv, tokens[:1+accepted], b.cfg.ChainReuse)
	b.kv.Trim(s.kv)
	s.computed += 1 + accepted
	b.stats(s).record(drafted, accepted)
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

// stats returns the statistics of s's pending draft: its stage's, of its
// class.
func (b *Batcher) stats(s *seq) *specStats { return &b.specStats[s.stage][s.spec.class] }

// rowCost is the cost of a draft row in a step of decoders decoding
// sequences, relative to the share of the step that one token of them
// costs: B / (specStepRows + B).
func rowCost(decoders int) float64 {
	return float64(decoders) / float64(specStepRows+decoders)
}
