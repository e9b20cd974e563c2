// Package engine is the contract between the batcher and a model: the
// interface the batcher's step loop drives and the plain data types that cross
// it. It imports nothing of ours, so the batcher and the model packages can
// both depend on it without depending on each other.
package engine

import (
	"context"
	"errors"
)

// ErrDeviceLost is wrapped by the errors of EncodeImages and Forward when
// the engine's device can run no more work (a sticky CUDA error): every
// later call would fail too and only a new process recovers, so the caller
// stops serving and the process exits for its supervisor to restart it.
var ErrDeviceLost = errors.New("device lost")

// ImageToken marks, in Chunk.Tokens, a position whose input is a row of
// Chunk.Image instead of a token embedding.
const ImageToken int32 = -200

// Spec holds the static facts about a loaded model that the batcher needs.
type Spec struct {
	Name          string // model name, e.g. "tiny (random weights)"
	Hidden        int    // LLM hidden size
	VocabSize     int    // rows of the logits
	ImageTokens   int    // image feature rows per image (576 for LLaVA-1.5)
	ImageSize     int    // side of the square model input in pixels (336)
	MaxContext    int    // max positions (4096)
	BOS, EOS      int32  // special token ids
	KVBlockSize   int    // tokens per KV-cache block
	KVBlocks      int    // blocks in the KV pool
	KVDType       string // KV-cache storage: "float32", "bfloat16" or "float16"
	DType         string // weight dtype as stored: "float32", "bfloat16", "float16"
	Device        string // "cpu" or "cuda:N"
	RandomWeights bool   // true for generated checkpoints: say so to users
}

// Image is a preprocessed image ready for the vision tower.
type Image struct {
	Pixels        []float32 // [3 × ImageSize × ImageSize], normalised CHW
	Width, Height int       // original size in pixels, before padding
}

// Features is one image's encoder output, [ImageTokens × Hidden] rows, kept
// by the engine where Forward reads it (device memory on a GPU, a host slice
// behind the handle on the CPU), so the rows never travel through the
// caller. EncodeImages may return before the encode has finished (a GPU
// engine queues it beside the decode work); Ready tells. Its methods are
// called from the goroutine that calls Forward.
type Features interface {
	// Ready reports, without waiting, whether the encode has finished. A
	// chunk may name features that are not ready (Forward orders its reads
	// after the encode), but its step then waits for the encode: a caller
	// keeps other work running by scheduling image rows once Ready.
	Ready() bool
	// Wait blocks until Ready (a caller with nothing else to run).
	Wait()
	// Release gives the features' memory back. Call it exactly once, after
	// the last Forward whose chunks name them; no chunk may name them
	// afterwards.
	Release()
}

// Chunk is one sequence's slice of work in a forward step: Tokens are fed at
// positions Pos, Pos+1, … and their keys and values are written into the KV
// cache blocks named by Blocks (block i holds positions
// [i·KVBlockSize, (i+1)·KVBlockSize)). Attention reads all positions < Pos+i
// from the same blocks.
type Chunk struct {
	Blocks []int32  // block table covering at least Pos+len(Tokens) positions
	Pos    int      // position of Tokens[0]
	Tokens []int32  // token ids, or ImageToken where Image supplies the input
	Image  Features // the rows of the ImageToken positions; nil when there are none
	// ImageRow is the row of Image that the first ImageToken of Tokens
	// takes; the following ones take the following rows (so an image's
	// prefill may be cut into chunks, and recomputed, at any row).
	ImageRow int
	Logits   bool // return the logits of the last position of this chunk
	// AllLogits returns the logits of every position of this chunk, one
	// row per token in order, instead of the last one alone (a
	// verification chunk of speculative decoding). A row equals the one a
	// chunk ending at its position would return.
	AllLogits bool
	// Greedy returns the chunk's LogitRows as token ids (Output.Tokens)
	// instead of logit rows: for each row the index of its largest logit,
	// the lowest among equals, the first NaN before all (sample.Argmax, the
	// pick of a sequence sampling at temperature 0). An engine on an
	// accelerator picks them there and reads back one id per row.
	Greedy bool
	// Sample returns the chunk's one logit row (Logits, neither AllLogits
	// nor Greedy) as a sampled token id (Output.Tokens) instead of a logit
	// row. An engine on an accelerator samples there and reads back the
	// id alone.
	Sample *Sampling
}

// Sampling is the draw of a Sample chunk: sample.Picker's rule
// (temperature, top-k, top-p, then the softmax of what is left) at these
// parameters, the draw falling at U.
type Sampling struct {
	Temperature float32 // > 0
	TopK        int     // 0: off
	TopP        float32 // 0 or 1: off
	U           float64 // in [0, 1): the sequence's next random number (sample.Sampler.Uniform)
}

// Output is what Forward returns for a batch: every chunk's LogitRows, in
// batch order, as token ids in Tokens for the Greedy and Sample chunks and
// as logit rows ([VocabSize]) in Logits for the others. It is the engine's
// memory, valid until its next Forward, which may reuse it.
type Output struct {
	Logits [][]float32
	Tokens []int32
}

// Picked reports whether Forward returns c's rows as token ids (a Greedy
// or Sample chunk) rather than logit rows.
func (c *Chunk) Picked() bool { return c.Greedy || c.Sample != nil }

// LogitRows is the number of logit rows (or, for a Greedy or Sample
// chunk, token ids) Forward returns for c.
func (c *Chunk) LogitRows() int {
	switch {
	case c.AllLogits:
		return len(c.Tokens)
	case c.Logits:
		return 1
	}
	return 0
}

// Tokenizer turns text into token ids and back.
type Tokenizer interface {
	// Encode tokenises text as LLaMA's tokenizer does; bos prepends BOS.
	Encode(text string, bos bool) []int32
	// Decode returns the text of ids, skipping special tokens, as
	// tokenizer.decode(ids, skip_special_tokens=True) does.
	Decode(ids []int32) string
}

// Engine is a loaded model as the step loop sees it. Only Preprocess and
// Tokenizer may be called concurrently; everything else is called from the
// one goroutine that owns the device.
type Engine interface {
	Spec() Spec
	Tokenizer() Tokenizer
	// ImageCost reads an encoded image's headers alone and returns a bound
	// on the bytes Preprocess allocates for it, or the error Preprocess
	// would return for what the headers already show (format, limits).
	// Callers admit the decode against a memory budget with it. Safe for
	// concurrent use.
	ImageCost(data []byte) (int64, error)
	// Preprocess decodes an encoded image (JPEG, PNG, WebP, GIF) and applies
	// the model's preprocessing, stopping soon after ctx is done. Safe for
	// concurrent use.
	Preprocess(ctx context.Context, data []byte) (Image, error)
	// EncodeImages runs the vision tower and projector on a batch of images,
	// or queues them (see Features): result i holds image i's
	// [ImageTokens × Hidden] rows until released. It and Forward return an
	// error wrapping ErrDeviceLost, never a panic, when the device is lost.
	EncodeImages(imgs []Image) ([]Features, error)
	// Forward runs one step over a batch of chunks, writing their keys and
	// values into the KV cache. It returns every chunk's LogitRows (one for
	// Logits, one per token for AllLogits), in batch order, as logit rows
	// or, for Greedy chunks, token ids (Output). The result of a chunk
	// never depends on the other chunks of the batch.
	Forward(batch []Chunk) (Output, error)
}
