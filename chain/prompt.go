package chain

import "fmt"

// System is the system text of the vicuna_v1 conversation template.
const System = "A chat between a curious user and an artificial intelligence assistant. " +
	"The assistant gives helpful, detailed, and polite answers to the user's questions."

// ImagePlaceholder marks where the image embeddings go in a templated prompt.
const ImagePlaceholder = "<image>"

// The user prompts of the four stages (DESIGN.md §2). Stages 2–4 end with the
// previous stage's serialised hand-off list.
const (
	PromptLocalize = "Please localize all entities in this image."
	PromptTag      = "Please specify the semantic tags of all entities based on their bounding boxes: "
	PromptDiscover = "Please specify missing entities and their locations for this image based on these specified entities: "
	PromptCaption  = "Please provide a hyper-detailed description for this image, including all entities, " +
		"their locations, attributes, and relationships, as well as the global image status, based on boxes and tags: "
)

// Stages lists the four stages in chain order.
var Stages = [4]Stage{Localize, Tag, Discover, Caption}

// String names the stage: "localize", "tag", "discover" or "caption".
func (s Stage) String() string {
	switch s {
	case Localize:
		return "localize"
	case Tag:
		return "tag"
	case Discover:
		return "discover"
	case Caption:
		return "caption"
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// Valid reports whether s is one of the four stages.
func (s Stage) Valid() bool { return s >= Localize && s <= Caption }

// Prompt returns the user text of stage, with handoff (the serialised list of
// the previous stage) appended verbatim for stages 2–4. Stage 1 ignores
// handoff. An invalid stage panics: it is a programming error.
func Prompt(stage Stage, handoff string) string {
	switch stage {
	case Localize:
		return PromptLocalize
	case Tag:
		return PromptTag + handoff
	case Discover:
		return PromptDiscover + handoff
	case Caption:
		return PromptCaption + handoff
	}
	panic(fmt.Sprintf("chain: invalid stage %d", int(stage)))
}

// Template wraps user text in the vicuna_v1 single-turn template with the
// image placeholder first, exactly as the authors' script builds it:
//
//	{System} USER: <image>\n{user} ASSISTANT:
func Template(user string) string {
	return System + " USER: " + ImagePlaceholder + "\n" + user + " ASSISTANT:"
}
