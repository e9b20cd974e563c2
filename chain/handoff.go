package chain

import "fmt"

// Handoff carries one chain's lists from stage to stage: the one home of
// the chain's semantics, used by the batcher that serves traffic and by the
// golden tests alike. Use it in stage order: Prompt(stage) gives the stage's
// user text, Advance(stage, text) takes the stage's trimmed answer. The zero
// value is ready for stage 1.
type Handoff struct {
	next   string   // serialised list for the next stage's prompt
	stage2 []Entity // stage 2's list, which stage 3's is merged onto
	final  []Entity // the latest list: stage 1's boxes, stage 2's, then the merge
}

// Prompt returns stage's user text with the previous stage's list.
func (h *Handoff) Prompt(stage Stage) string { return Prompt(stage, h.next) }

// List returns the serialised list the next stage's prompt takes: after
// stage 1 its boxes, after stages 2 and 3 the tagged list; "" before stage 1
// and after stage 4, which no stage follows.
func (h *Handoff) List() string { return h.next }

// Advance parses stage's answer and returns its list as entities: stage 1's
// boxes (Stage Localize, no tag), stage 2's tagged list (Stage Tag), stage
// 3's list merged onto stage 2's (Stage Tag or Discover), or stage 4's
// mentions (Stage Caption). It also prepares the next stage's prompt.
// Pixel boxes are not set (see SetPixels).
func (h *Handoff) Advance(stage Stage, text string) []Entity {
	var ents []Entity
	switch stage {
	case Localize:
		boxes := ParseBoxes(text)
		ents = make([]Entity, len(boxes))
		for i, b := range boxes {
			ents[i] = Entity{Box: b, Stage: Localize}
		}
		h.final = ents
		h.next = SerializeBoxes(boxes)
		return ents
	case Tag:
		h.stage2 = Merge(ParseTagged(text), nil, "")
		ents = h.stage2
	case Discover:
		ents = Merge(h.stage2, ParseTagged(text), text)
	case Caption:
		h.next = ""
		return Mentions(text)
	default:
		panic(fmt.Sprintf("chain: invalid stage %d", int(stage)))
	}
	h.final = ents
	h.next = SerializeTagged(ents)
	return ents
}

// Entities returns the chain's latest list: stage 3's merge, stage 2's
// list when the chain stopped after stage 2, stage 1's boxes after stage 1,
// or nil before that. Stage 4's mentions never replace it.
func (h *Handoff) Entities() []Entity { return h.final }

// handoffSlack is the tokens added per stage to HandoffBound: re-tokenising
// a serialised list can differ from the generated ids at its edges.
const handoffSlack = 4

// HandoffBound bounds the tokens stage's prompt spends on its hand-off list,
// given each stage's limit on generated tokens: nothing for stage 1, stage
// 1's output for stage 2, stage 2's for stage 3 (stage 3 sees stage 2's
// list), stages 2 and 3 together for stage 4 (the merge), each plus a small
// slack for re-tokenisation. The batcher refuses a request whose largest
// stage, bounded so, cannot fit the KV pool.
func HandoffBound(stage Stage, maxNew [len(Stages)]int) int {
	list := [len(Stages)]int{0, maxNew[0], maxNew[1], maxNew[1] + maxNew[2]}
	return list[stage-1] + handoffSlack
}
