package llava

import (
	"errors"
	"slices"
	"testing"

	"github.com/pancap-serve/pancap/engine"
)

func validConfig() Config {
	return Config{
		Vision:      VisionConfig{Hidden: 64, Layers: 2, Heads: 4, MLP: 256, ImageSize: 56, PatchSize: 14, Eps: 1e-5, Act: "quick_gelu"},
		Text:        TextConfig{Hidden: 64, Layers: 2, Heads: 4, KVHeads: 4, FFN: 176, VocabRows: 1008, Eps: 1e-5, RopeTheta: 10000, MaxPos: 4096},
		SelectLayer: -2, ProjectorLayers: 2, Vocab: 1000, BOS: 1, EOS: 2,
	}
}

func TestConfigValidate(t *testing.T) {
	c := validConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Vision.Patches() != 16 || c.VisionLayersUsed() != 1 {
		t.Errorf("patches %d, layers used %d", c.Vision.Patches(), c.VisionLayersUsed())
	}
	for name, edit := range map[string]func(*Config){
		"gqa":          func(c *Config) { c.Text.KVHeads = 2 },
		"odd head":     func(c *Config) { c.Text.Heads = 64 },
		"vocab rows":   func(c *Config) { c.Vocab = 2000 },
		"select layer": func(c *Config) { c.SelectLayer = -5 },
		"activation":   func(c *Config) { c.Vision.Act = "relu" },
		"patch":        func(c *Config) { c.Vision.PatchSize = 15 },
		"projector":    func(c *Config) { c.ProjectorLayers = 0 },
	} {
		c := validConfig()
		edit(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate gave %v, want ErrConfig", name, err)
		}
	}
}

func TestExpandImageTokens(t *testing.T) {
	got := ExpandImageTokens([]int32{1, 5, engine.ImageToken, 6}, 3)
	want := []int32{1, 5, engine.ImageToken, engine.ImageToken, engine.ImageToken, 6}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
