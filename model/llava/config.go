// Package llava is the LLaVA-1.5 engine: the CLIP vision tower, the MLP
// projector and the LLaMA decoder as straight-line forward passes over a
// kernels.Backend, with the KV cache in paged blocks. *Model implements
// engine.Engine. Checkpoint parsing lives in package model; this package
// receives a Config and bound Weights.
package llava

import (
	"errors"
	"fmt"
	"math"
)

// ErrConfig reports a configuration the engine cannot run.
var ErrConfig = errors.New("llava: unsupported configuration")

// ErrChunk reports an invalid Forward or EncodeImages input.
var ErrChunk = errors.New("llava: invalid input")

// VisionConfig is the geometry of the CLIP vision tower.
type VisionConfig struct {
	Hidden    int     // hidden size (1024 for ViT-L)
	Layers    int     // encoder layers in the checkpoint (24)
	Heads     int     // attention heads (16)
	MLP       int     // MLP inner size (4096)
	ImageSize int     // input side in pixels (336)
	PatchSize int     // patch side in pixels (14)
	Eps       float32 // LayerNorm epsilon (1e-5)
	Act       string  // MLP activation: "quick_gelu" or "gelu"
}

// Patches is the number of patch tokens per image.
func (c VisionConfig) Patches() int { g := c.ImageSize / c.PatchSize; return g * g }

// TextConfig is the geometry of the LLaMA decoder.
type TextConfig struct {
	Hidden    int     // hidden size (5120 for 13B)
	Layers    int     // decoder layers (40)
	Heads     int     // attention heads (40)
	KVHeads   int     // key/value heads; must equal Heads (no GQA)
	FFN       int     // SwiGLU inner size (13824)
	VocabRows int     // rows of embed_tokens and lm_head, possibly padded
	Eps       float32 // RMSNorm epsilon
	RopeTheta float32 // RoPE base (10000)
	MaxPos    int     // positions a sequence may use: max_position_embeddings, or fewer when the KV pool holds fewer (4096)
}

// Config describes a LLaVA-1.5 model.
type Config struct {
	Vision      VisionConfig
	Text        TextConfig
	SelectLayer int // vision_feature_layer: hidden state index, negative from the end (-2)
	// ProjectorLayers is the number of Linear layers of the projector
	// (mlpNx_gelu: N Linear layers with exact GELU between them).
	ProjectorLayers int
	Vocab           int   // true vocabulary (the tokenizer's); logits have this many rows
	BOS, EOS        int32 // special token ids
}

// finitePositive reports whether x is finite and above 0.
func finitePositive(x float32) bool { return x > 0 && x <= math.MaxFloat32 }

// VisionLayersUsed is how many encoder layers run: hidden_states[i] is the
// output of layer i, hidden_states[0] the embeddings.
func (c Config) VisionLayersUsed() int {
	if c.SelectLayer < 0 {
		return c.Vision.Layers + 1 + c.SelectLayer
	}
	return c.SelectLayer
}

// Validate checks that the engine can run c.
func (c Config) Validate() error {
	v, t := c.Vision, c.Text
	switch {
	case v.Hidden <= 0 || v.Layers <= 0 || v.Heads <= 0 || v.MLP <= 0 || v.ImageSize <= 0 || v.PatchSize <= 0:
		return fmt.Errorf("%w: vision geometry %+v", ErrConfig, v)
	case v.Hidden%v.Heads != 0 || v.ImageSize%v.PatchSize != 0:
		return fmt.Errorf("%w: vision hidden %d / heads %d or image %d / patch %d not whole", ErrConfig, v.Hidden, v.Heads, v.ImageSize, v.PatchSize)
	case !finitePositive(v.Eps):
		return fmt.Errorf("%w: vision LayerNorm epsilon %g", ErrConfig, v.Eps)
	case v.Act != "quick_gelu" && v.Act != "gelu":
		return fmt.Errorf("%w: vision activation %q", ErrConfig, v.Act)
	case t.Hidden <= 0 || t.Layers <= 0 || t.Heads <= 0 || t.FFN <= 0 || t.VocabRows <= 0 || t.MaxPos <= 0:
		return fmt.Errorf("%w: text geometry %+v", ErrConfig, t)
	case t.Hidden%t.Heads != 0 || (t.Hidden/t.Heads)%2 != 0:
		return fmt.Errorf("%w: text hidden %d / heads %d must give an even head size", ErrConfig, t.Hidden, t.Heads)
	case !finitePositive(t.Eps) || !finitePositive(t.RopeTheta):
		return fmt.Errorf("%w: RMSNorm epsilon %g and RoPE theta %g must be finite and positive", ErrConfig, t.Eps, t.RopeTheta)
	case t.KVHeads != t.Heads:
		return fmt.Errorf("%w: %d key/value heads for %d heads (grouped-query attention is not supported)", ErrConfig, t.KVHeads, t.Heads)
	case c.Vocab <= 0 || c.Vocab > t.VocabRows:
		return fmt.Errorf("%w: vocabulary %d with %d embedding rows", ErrConfig, c.Vocab, t.VocabRows)
	case c.ProjectorLayers < 1:
		return fmt.Errorf("%w: projector with %d layers", ErrConfig, c.ProjectorLayers)
	}
	if n := c.VisionLayersUsed(); n < 0 || n > v.Layers {
		return fmt.Errorf("%w: vision feature layer %d of %d layers", ErrConfig, c.SelectLayer, v.Layers)
	}
	return nil
}
