package chain

import "fmt"

// Handoff carries one chain's lists from stage to stage. Use it in stage
// order: Prompt(stage) gives the stage's user text, Advance(stage, text)
// takes the stage's trimmed answer. The zero value is ready for stage 1.
type Handoff struct {
	next   string   // serialised list for the next stage's prompt
	stage2 []Entity // stage 2's list, which stage 3's is merged onto
	final  []Entity // the latest tagged list: stage 2's, then the merge
}

// Prompt returns stage's user text with the previous stage's list.
func (h *Handoff) Prompt(stage Stage) string { return Prompt(stage, h.next) }

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
		h.next = SerializeBoxes(boxes)
		return ents
	case Tag:
		h.stage2 = Merge(ParseTagged(text), nil, "")
		ents = h.stage2
	case Discover:
		ents = Merge(h.stage2, ParseTagged(text), text)
	case Caption:
		return Mentions(text)
	default:
		panic(fmt.Sprintf("chain: invalid stage %d", int(stage)))
	}
	h.final = ents
	h.next = SerializeTagged(ents)
	return ents
}

// Entities returns the chain's final tagged list: stage 3's merge, or stage
// 2's list when the chain stopped after stage 2, or nil before that.
func (h *Handoff) Entities() []Entity { return h.final }
