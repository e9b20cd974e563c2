// Package presets defines the random-weight model presets of DESIGN.md §7
// (tiny, bench, 13b) and writes them as checkpoints in the authors' LLaVA
// layout, with deterministic seeded weights, so that every test and
// benchmark runs on the same model from one run to the next.
package presets

import (
	"embed"
	"fmt"
	"slices"

	"github.com/pancap-serve/pancap/model/weights"
)

//go:embed tokenizers/*.model
var tokenizers embed.FS

// Vision is the geometry of a CLIP ViT vision tower.
type Vision struct {
	ImageSize int // side of the square input in pixels
	PatchSize int // side of a patch in pixels
	Hidden    int // width of the residual stream
	Layers    int // encoder layers
	Heads     int // attention heads
	MLP       int // width of the quick_gelu MLP
	ProjDim   int // projection_dim of the CLIP config (unused by LLaVA)
}

// Patches returns the number of image tokens: patches of the input.
func (v Vision) Patches() int { return (v.ImageSize / v.PatchSize) * (v.ImageSize / v.PatchSize) }

// LLM is the geometry of a LLaMA decoder.
type LLM struct {
	Hidden       int // width of the residual stream
	Layers       int // decoder layers
	Heads        int // attention heads
	KVHeads      int // key/value heads (equal to Heads: no GQA in LLaMA-2-13B)
	FFN          int // SwiGLU intermediate width
	Vocab        int // rows of the token embedding and lm_head
	MaxPositions int // max_position_embeddings
}

// Preset is one named model geometry with its tokenizer.
type Preset struct {
	Name      string
	Vision    Vision
	LLM       LLM
	DType     weights.DType // dtype the preset is meant to be used with
	Tokenizer string        // file in tokenizers/
}

// The presets of DESIGN.md §7.
var (
	// Tiny is for unit tests and golden files (testdata/checkpoints/tiny).
	Tiny = Preset{
		Name:      "tiny",
		Vision:    Vision{ImageSize: 56, PatchSize: 14, Hidden: 64, Layers: 2, Heads: 4, MLP: 256, ProjDim: 64},
		LLM:       LLM{Hidden: 64, Layers: 2, Heads: 4, KVHeads: 4, FFN: 176, Vocab: 1000, MaxPositions: 4096},
		DType:     weights.F32,
		Tokenizer: "tiny.model",
	}
	// Bench is for CPU benchmarks: the real image geometry (576 image
	// tokens) with a small LLM.
	Bench = Preset{
		Name:      "bench",
		Vision:    Vision{ImageSize: 336, PatchSize: 14, Hidden: 256, Layers: 4, Heads: 4, MLP: 1024, ProjDim: 256},
		LLM:       LLM{Hidden: 1024, Layers: 8, Heads: 16, KVHeads: 16, FFN: 2816, Vocab: 32000, MaxPositions: 4096},
		DType:     weights.BF16,
		Tokenizer: "bench.model",
	}
	// B13 is the geometry of PancapChain-13B (CLIP ViT-L/14-336 and
	// LLaMA-2-13B), for GPU benchmarks and memory planning.
	B13 = Preset{
		Name:      "13b",
		Vision:    Vision{ImageSize: 336, PatchSize: 14, Hidden: 1024, Layers: 24, Heads: 16, MLP: 4096, ProjDim: 768},
		LLM:       LLM{Hidden: 5120, Layers: 40, Heads: 40, KVHeads: 40, FFN: 13824, Vocab: 32000, MaxPositions: 4096},
		DType:     weights.F16,
		Tokenizer: "bench.model",
	}
)

// All returns every preset, smallest first.
func All() []Preset { return []Preset{Tiny, Bench, B13} }

// Names returns the preset names, as flags spell them.
func Names() []string {
	var names []string
	for _, p := range All() {
		names = append(names, p.Name)
	}
	return names
}

// Get returns the preset of the given name.
func Get(name string) (Preset, error) {
	i := slices.IndexFunc(All(), func(p Preset) bool { return p.Name == name })
	if i < 0 {
		return Preset{}, fmt.Errorf("presets: unknown preset %q (have %v)", name, Names())
	}
	return All()[i], nil
}

// TokenizerModel returns the bytes of the preset's tokenizer.model.
func (p Preset) TokenizerModel() ([]byte, error) {
	return tokenizers.ReadFile("tokenizers/" + p.Tokenizer)
}
