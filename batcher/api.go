package batcher

import (
	"time"

	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/sample"
)

// ChainRequest asks for PancapChain on one image.
type ChainRequest struct {
	RequestID    string        // client-chosen id, for logs
	Image        []byte        // encoded image (JPEG, PNG, WebP, GIF)
	Stages       int           // run stages 1..Stages (1–4; 0 means 4)
	MaxNewTokens [4]int        // per stage; 0 means Limits.DefaultMaxNewTokens
	Sampling     sample.Params // zero value: greedy
	Stop         []string      // extra stop strings, applied to every stage
	IgnoreEOS    bool          // generate exactly MaxNewTokens (benchmarks)
}

// GenerateRequest asks for one free-form generation on one image.
type GenerateRequest struct {
	RequestID    string
	Image        []byte // encoded image; may be empty for a text-only prompt
	Prompt       string // user text; wrapped in vicuna_v1 with <image> unless Raw
	Raw          bool   // use Prompt as is (it may contain <image>)
	MaxNewTokens int
	Sampling     sample.Params
	Stop         []string
	IgnoreEOS    bool
}

// EventKind tells which fields of an Event are set.
type EventKind int

// Event kinds, in the order a stream sees them.
const (
	EventQueued        EventKind = iota + 1 // Position
	EventImageEncoded                       // Timing of the encode (0 when served from cache), Cached
	EventStageStarted                       // Stage, Usage.PromptTokens, Usage.CachedTokens
	EventDelta                              // Stage, Text, TokenIDs
	EventStageFinished                      // Stage, Text, Entities, Handoff, Finish, Usage, Timing
	EventDone                               // Result or Err; always the last event
)

// Event is one item of a request's stream.
type Event struct {
	Kind     EventKind
	Position int            // EventQueued: requests ahead of this one
	Cached   bool           // EventImageEncoded: features came from cache
	Stage    chain.Stage    // 0 for a GenerateRequest
	Text     string         // EventDelta: new text; EventStageFinished: whole stage text
	TokenIDs []int32        // EventDelta: the tokens behind Text
	Entities []chain.Entity // EventStageFinished: the parsed hand-off list
	Handoff  string         // EventStageFinished: the list the next stage's prompt takes
	Finish   string         // EventStageFinished: "eos", "length" or "stop"
	Usage    Usage
	Timing   Timing
	Result   *Result // EventDone on success
	Err      error   // EventDone on failure
}

// Usage counts the tokens of one stage.
type Usage struct {
	PromptTokens    int // prompt length including image tokens
	CachedTokens    int // prompt tokens whose KV came from the prefix cache
	GeneratedTokens int
}

// Timing measures one stage (or the image encode).
type Timing struct {
	Queued     time.Duration // waiting for admission
	FirstToken time.Duration // from stage start to its first token
	Total      time.Duration // from stage start to its end
}

// StageResult is the outcome of one stage.
type StageResult struct {
	Stage    chain.Stage
	Text     string         // decoded, trimmed text
	TokenIDs []int32        // generated ids (EOS excluded)
	Entities []chain.Entity // hand-off list after dedup/merge
	Handoff  string         // the serialised list the next stage's prompt takes ("" after stage 4)
	Usage    Usage
	Timing   Timing
	Finish   string // "eos", "length", "stop"
}

// Result is the whole outcome of a request.
type Result struct {
	Stages   []StageResult
	Caption  string         // stage-4 text ("" when it did not run)
	Entities []chain.Entity // final entities (stage 2 merged with stage 3)
	Mentions []chain.Entity // boxes mentioned inline in the caption
	Width    int            // original image size
	Height   int
}
