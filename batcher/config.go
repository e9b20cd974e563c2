package batcher

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxQueue is Config.MaxQueue's default.
const DefaultMaxQueue = 64

// DefaultDecodeBudget is Config.DecodeBudget's default: 2 GiB, room for
// about four of the largest images the default limits accept (40 MP) and for
// dozens of ordinary photos at once.
const DefaultDecodeBudget = 2 << 30

// Config tunes a Batcher. Zero fields take the defaults named below; the
// zero ChainReuse is the baseline mode.
type Config struct {
	// MaxQueue is how many requests may wait for admission; more get
	// ErrQueueFull at once. Default DefaultMaxQueue.
	MaxQueue int
	// MaxBatchTokens is the per-step token budget shared by decode tokens and
	// prefill chunks. Default 512.
	MaxBatchTokens int
	// MaxEncodeBatch is the most images per vision-encoder call. Default 8.
	MaxEncodeBatch int
	// ChainReuse encodes each image once per chain and shares prefix KV
	// blocks across stages and requests. False is the baseline mode: every
	// stage re-encodes the image and prefills its whole prompt, as the
	// authors' script does.
	ChainReuse bool
	// Limits are the request rules that do not depend on the model; zero
	// fields take DefaultLimits' values.
	Limits Limits
	// FeatureCache is how many images' encoder outputs are kept for later
	// requests with the same image bytes (reuse mode only), in the engine's
	// memory (a GPU's: ImageTokens × Hidden × 4 bytes each, 11.8 MB at
	// 13B). Default 8.
	FeatureCache int
	// DecodeBudget bounds the bytes that image decoding may hold at once,
	// over all requests (each image's bound from Engine.ImageCost): the
	// memory a flood of images can take. An image whose bound alone exceeds
	// it is refused. Default DefaultDecodeBudget.
	DecodeBudget int64
	// Speculative drafts tokens for greedy sequences from their own
	// context (prompt lookup) and verifies them in their decode chunk;
	// outputs are unchanged (the engine's rows must be batch invariant, as
	// the CPU backend's are). Sequences that sample do not speculate.
	Speculative bool
	// SpeculativeTokens bounds a sequence's draft tokens per step. Default 8.
	SpeculativeTokens int
	// SpeculativeMaxBatch is the most decoding sequences a step may hold and
	// still carry drafts: larger steps are compute-bound, where draft rows
	// cost about as much as decode rows. Default 4.
	SpeculativeMaxBatch int
	// Metrics registers the batcher's Prometheus collectors; nil: none.
	Metrics prometheus.Registerer
	// Logger receives the step loop's panics; nil: slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with zero fields replaced by the defaults.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxQueue, DefaultMaxQueue)
	def(&c.MaxBatchTokens, 512)
	def(&c.MaxEncodeBatch, 8)
	c.Limits = c.Limits.WithDefaults()
	def(&c.FeatureCache, 8)
	def(&c.SpeculativeTokens, 8)
	def(&c.SpeculativeMaxBatch, 4)
	if c.DecodeBudget <= 0 {
		c.DecodeBudget = DefaultDecodeBudget
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
