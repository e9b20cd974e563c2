package batcher

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pancap-serve/pancap/batcher/kvcache"
	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/sample"
	"github.com/pancap-serve/pancap/tokenizer"
)

// request is one admitted or waiting ChainRequest or GenerateRequest. Its
// fields after out are owned by the step loop.
type request struct {
	ctx       context.Context
	id        string
	chain     bool          // a ChainRequest
	stages    chain.Stage   // chain: last stage to run
	maxNew    [4]int        // chain: per stage; generate: [0]
	params    sample.Params // validated
	stops     []string
	ignoreEOS bool
	prompt    []int32       // generate: the prompt ids
	image     []byte        // the encoded image until it is decoded at admission
	img       *engine.Image // the decoded image; nil for a text-only generation
	imgHash   kvcache.Hash  // content hash of the encoded image bytes
	need      int           // KV blocks its largest stage may take: at most the pool
	submitted time.Time
	out       *stream

	admitted       time.Time
	order          uint64    // admission order: FCFS among new requests
	cur            *seq      // the running stage
	features       *features // a reference to the image's encoder output once queued; nil otherwise
	cachedFeatures bool      // features came from the feature cache
	reported       bool      // EventImageEncoded sent (reuse mode: once per request)
	results        []StageResult
	handoff        chain.Handoff // chain: the lists passed from stage to stage
	done           bool
}

// firstStage is the stage a request starts with (0 for a generation).
func (r *request) firstStage() chain.Stage {
	if r.chain {
		return chain.Localize
	}
	return 0
}

// seq is one stage of a request: its tokens and KV blocks.
type seq struct {
	req       *request
	stage     chain.Stage // 0 for a generation
	tokens    []int32     // prompt ++ generated; the last generated one not yet run
	promptLen int
	imgAt     int  // index of the first ImageToken in tokens; -1 when none
	computed  int  // leading positions whose KV is written
	preempted bool // blocks taken back: look the prefix up again
	announced bool // EventStageStarted sent
	cached    int  // prompt tokens served by the prefix cache at stage start
	kv        *kvcache.Seq
	sampler   *sample.Sampler
	draw      engine.Sampling // the engine's draw of the latest sampled token (chunk)
	det       *detok
	spec      *drafter // speculation state; nil when the sequence does not speculate
	maxNew    int
	pending   []int32 // generated ids not yet sent in an EventDelta
	start     time.Time
	first     time.Time // first generated token
	last      time.Time // latest generated token
}

// generated returns the ids generated so far.
func (s *seq) generated() []int32 { return s.tokens[s.promptLen:] }

// stageLabel is the metrics label of a stage.
func stageLabel(s chain.Stage) string {
	if s == 0 {
		return "generate"
	}
	return s.String()
}

// maxNewTokens resolves one token limit that Limits accepted: 0 is the
// default, cut to room (the context left after the prompt) but at least 1;
// an explicit value must fit the model's context.
func (b *Batcher) maxNewTokens(field string, v, room int) (int, error) {
	if v == 0 {
		return max(1, min(b.cfg.Limits.DefaultMaxNewTokens, room)), nil
	}
	if v > b.spec.MaxContext {
		return 0, invalid(field, "must be at most the model's context, %d tokens, got %d", b.spec.MaxContext, v)
	}
	return v, nil
}

// setImage records the encoded image a request decodes once it holds a
// place in the queue (see Batcher.enqueue).
func (req *request) setImage(data []byte) {
	req.image, req.imgHash = data, kvcache.ImageHash(data)
}

// newChainRequest validates r against the limits and the model.
func (b *Batcher) newChainRequest(r ChainRequest) (*request, error) {
	if err := b.cfg.Limits.CheckChain(r); err != nil {
		return nil, err
	}
	stages := cmp.Or(r.Stages, len(chain.Stages))
	req := &request{id: r.RequestID, chain: true, stages: chain.Stage(stages), params: r.Sampling,
		stops: r.Stop, ignoreEOS: r.IgnoreEOS}
	for i := range stages {
		v, err := b.maxNewTokens(fmt.Sprintf("max_new_tokens[%d]", i), r.MaxNewTokens[i], b.spec.MaxContext-b.base[i])
		if err != nil {
			return nil, err
		}
		req.maxNew[i] = v
	}
	if n := b.base[0] + req.maxNew[0]; n > b.spec.MaxContext {
		return nil, fmt.Errorf("%w: stage 1 needs %d prompt + %d new tokens, the context holds %d",
			ErrPromptTooLong, b.base[0], req.maxNew[0], b.spec.MaxContext)
	}
	// The stages run one after another on one shared prefix, so the chain
	// needs as much KV as its largest stage: that stage's prompt with the
	// longest hand-off list the earlier limits allow, plus its own limit.
	for k := range stages {
		n := min(b.base[k]+chain.HandoffBound(chain.Stages[k], req.maxNew)+req.maxNew[k], b.spec.MaxContext)
		req.need = max(req.need, b.kv.BlocksFor(n))
	}
	if err := b.fitsPool(req.need); err != nil {
		return nil, err
	}
	req.setImage(r.Image)
	return req, nil
}

// newGenerateRequest validates r against the limits and the model and
// builds its prompt.
func (b *Batcher) newGenerateRequest(r GenerateRequest) (*request, error) {
	if err := b.cfg.Limits.CheckGenerate(r); err != nil {
		return nil, err
	}
	hasImage := len(r.Image) > 0
	text := r.Prompt
	switch n := strings.Count(text, chain.ImagePlaceholder); {
	case strings.TrimSpace(text) == "":
		return nil, invalid("prompt", "must not be empty")
	case !r.Raw && n > 0:
		return nil, invalid("prompt", "must not contain %s unless raw is set", chain.ImagePlaceholder)
	case r.Raw && hasImage && n != 1:
		return nil, invalid("prompt", "must contain %s exactly once with an image, found %d", chain.ImagePlaceholder, n)
	case r.Raw && !hasImage && n != 0:
		return nil, invalid("prompt", "contains %s but no image was given", chain.ImagePlaceholder)
	case !r.Raw && hasImage:
		text = chain.Template(text)
	case !r.Raw:
		text = chain.System + " USER: " + text + " ASSISTANT:"
	}
	req := &request{id: r.RequestID, params: r.Sampling, stops: r.Stop, ignoreEOS: r.IgnoreEOS}
	req.prompt = tokenizer.EncodeImagePrompt(b.tok, text, b.spec.ImageTokens)
	maxNew, err := b.maxNewTokens("max_new_tokens", r.MaxNewTokens, b.spec.MaxContext-len(req.prompt))
	if err != nil {
		return nil, err
	}
	req.maxNew[0] = maxNew
	if n := len(req.prompt) + maxNew; n > b.spec.MaxContext {
		return nil, fmt.Errorf("%w: %d prompt + %d new tokens, the context holds %d",
			ErrPromptTooLong, len(req.prompt), maxNew, b.spec.MaxContext)
	}
	req.need = b.kv.BlocksFor(len(req.prompt) + maxNew)
	if err := b.fitsPool(req.need); err != nil {
		return nil, err
	}
	if hasImage {
		req.setImage(r.Image)
	}
	return req, nil
}

// fitsPool refuses a request that could never be admitted.
func (b *Batcher) fitsPool(need int) error {
	if need > b.kv.NumBlocks() {
		return fmt.Errorf("%w: needs %d KV blocks, the pool holds %d", ErrPromptTooLong, need, b.kv.NumBlocks())
	}
	return nil
}

// advance runs the chain's hand-off on the text of a finished stage and
// returns the entities to report for the stage, with pixel boxes.
func (r *request) advance(stage chain.Stage, text string) []chain.Entity {
	ents := r.handoff.Advance(stage, text)
	if r.img != nil {
		chain.SetPixels(ents, r.img.Width, r.img.Height)
	}
	return ents
}
