package openai

import (
	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/chain"
)

// completion is a chat.completion or a chat.completion.chunk.
type completion struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	SystemFingerprint *string  `json:"system_fingerprint"` // always null
	Choices           []choice `json:"choices"`
	Usage             *usage   `json:"usage,omitempty"`
	Pancap            *ext     `json:"pancap,omitempty"` // chunks of a chain run
}

// choice is the one choice of a completion (n is always 1).
type choice struct {
	Index        int       `json:"index"`
	Message      *msg      `json:"message,omitempty"` // chat.completion
	Delta        *msg      `json:"delta,omitempty"`   // chat.completion.chunk
	Logprobs     *struct{} `json:"logprobs"`          // always null
	FinishReason *string   `json:"finish_reason"`
}

// msg is an assistant message or the delta of one.
type msg struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
	Refusal *string `json:"refusal,omitempty"`
	Pancap  *ext    `json:"pancap,omitempty"` // the whole chain of a chain run's message
}

// usage counts tokens as OpenAI does; a chain's sums its stages.
type usage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// add adds one stage's usage.
func (u *usage) add(s batcher.Usage) {
	u.PromptTokens += s.PromptTokens
	u.CompletionTokens += s.GeneratedTokens
	u.TotalTokens += s.PromptTokens + s.GeneratedTokens
	u.PromptTokensDetails.CachedTokens += s.CachedTokens
}

// ext is the "pancap" extension object of chain runs: on a chunk it
// describes one event (Event set); on the final message and on the last
// chunk (Event "done") it holds the whole chain.
type ext struct {
	Event     string      `json:"event,omitempty"`      // chunks: queued, image_encoded, stage_started, delta, stage_finished, done
	Position  *int        `json:"position,omitempty"`   // queued: requests ahead
	Cached    *bool       `json:"cached,omitempty"`     // image_encoded: the features came from the cache
	Stage     int         `json:"stage,omitempty"`      // 1 localize, 2 tag, 3 discover, 4 caption
	StageName string      `json:"stage_name,omitempty"` // localize, tag, discover, caption
	Text      string      `json:"text,omitempty"`       // delta: new text; stage_finished: the stage's text
	Entities  []entity    `json:"entities,omitempty"`   // stage_finished: the stage's; done and message: the final list
	Usage     *stageUsage `json:"usage,omitempty"`      // stage_started (prompt), stage_finished (all)

	Stages      []stageResult `json:"stages,omitempty"`       // done and message
	Mentions    []entity      `json:"mentions,omitempty"`     // done and message: boxes named inline in the caption
	ImageWidth  int           `json:"image_width,omitempty"`  // done and message: the original image's size
	ImageHeight int           `json:"image_height,omitempty"` // done and message
}

// entity is one entity with its box in the model's 0–1000 square frame and
// in pixels of the original image.
type entity struct {
	Tag   string     `json:"tag,omitempty"` // empty for stage-1 boxes
	Stage int        `json:"stage"`
	Box   [4]int     `json:"box"`
	BoxPx [4]float64 `json:"box_px"`
}

// stageUsage counts one stage's tokens.
type stageUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CachedTokens     int `json:"cached_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// stageResult is one finished stage of the chain.
type stageResult struct {
	Stage        int        `json:"stage"`
	StageName    string     `json:"stage_name"`
	Text         string     `json:"text"`
	Entities     []entity   `json:"entities"`
	Usage        stageUsage `json:"usage"`
	FinishReason string     `json:"finish_reason"`
}

func entities(es []chain.Entity) []entity {
	out := make([]entity, len(es))
	for i, e := range es {
		out[i] = entity{Tag: e.Tag, Stage: int(e.Stage), Box: e.Box, BoxPx: e.Pixel}
	}
	return out
}

func stageUsageOf(u batcher.Usage) *stageUsage {
	return &stageUsage{PromptTokens: u.PromptTokens, CachedTokens: u.CachedTokens, CompletionTokens: u.GeneratedTokens}
}

// finishReason maps the batcher's finish of a stage: an end of sequence or
// a stop string is "stop", the token limit "length".
func finishReason(f string) string {
	if f == "length" {
		return "length"
	}
	return "stop"
}

// resultExt is the extension of a finished chain.
func resultExt(r *batcher.Result) *ext {
	e := &ext{Entities: entities(r.Entities), Mentions: entities(r.Mentions), ImageWidth: r.Width, ImageHeight: r.Height}
	for _, s := range r.Stages {
		e.Stages = append(e.Stages, stageResult{Stage: int(s.Stage), StageName: s.Stage.String(), Text: s.Text,
			Entities: entities(s.Entities), Usage: *stageUsageOf(s.Usage), FinishReason: finishReason(s.Finish)})
	}
	return e
}

// eventExt is the extension of a chunk for a chain event; nil for the
// deltas of the answering stage (plain content) and for kinds not carried.
func eventExt(ev *batcher.Event, answering chain.Stage) *ext {
	st := &ext{Stage: int(ev.Stage), StageName: ev.Stage.String()}
	switch ev.Kind {
	case batcher.EventQueued:
		return &ext{Event: "queued", Position: &ev.Position}
	case batcher.EventImageEncoded:
		return &ext{Event: "image_encoded", Cached: &ev.Cached}
	case batcher.EventStageStarted:
		st.Event, st.Usage = "stage_started", stageUsageOf(ev.Usage)
	case batcher.EventDelta:
		if ev.Stage == answering {
			return nil
		}
		st.Event, st.Text = "delta", ev.Text
	case batcher.EventStageFinished:
		st.Event, st.Text, st.Entities, st.Usage = "stage_finished", ev.Text, entities(ev.Entities), stageUsageOf(ev.Usage)
	default:
		return nil
	}
	return st
}

// answer is the content of a result (the last stage's text: the caption of
// a whole chain), its finish reason and usage.
func answer(r *batcher.Result) (string, string, usage) {
	var u usage
	for _, s := range r.Stages {
		u.add(s.Usage)
	}
	if len(r.Stages) == 0 {
		return "", "stop", u
	}
	last := r.Stages[len(r.Stages)-1]
	return last.Text, finishReason(last.Finish), u
}
