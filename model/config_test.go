package model

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pancap-serve/pancap/model/llava"
)

// TestHFConfigDefaults checks that a diff-only llava-hf config (as
// transformers 4.37.2 writes it) takes LlamaConfig's and CLIPVisionConfig's
// defaults for absent keys, and LlavaConfig's CLIP-L/336 tower when
// vision_config is absent.
func TestHFConfigDefaults(t *testing.T) {
	raw, err := parseRawConfig([]byte(`{"model_type": "llava", "text_config": {"hidden_size": 64, "vocab_size": 1008},
		"vision_config": {"hidden_size": 32, "num_attention_heads": 4, "image_size": 56, "patch_size": 14}}`), "x")
	if err != nil {
		t.Fatal(err)
	}
	if l, err := raw.layout("x"); err != nil || l != LayoutHF {
		t.Fatalf("layout %q, %v", l, err)
	}
	cfg, err := raw.hfConfig("x")
	if err != nil {
		t.Fatal(err)
	}
	want := llava.Config{
		Vision:      llava.VisionConfig{Hidden: 32, Layers: 12, Heads: 4, MLP: 3072, ImageSize: 56, PatchSize: 14, Eps: 1e-5, Act: "quick_gelu"},
		Text:        llava.TextConfig{Hidden: 64, Layers: 32, Heads: 32, KVHeads: 32, FFN: 11008, VocabRows: 1008, Eps: 1e-6, RopeTheta: 10000, MaxPos: 2048},
		SelectLayer: -2, ProjectorLayers: 2, Vocab: 1008, BOS: 1, EOS: 2,
	}
	if cfg != want {
		t.Errorf("config\n got %+v\nwant %+v", cfg, want)
	}
	raw, _ = parseRawConfig([]byte(`{"architectures": ["LlavaForConditionalGeneration"]}`), "x")
	if cfg, err = raw.hfConfig("x"); err != nil || cfg.Vision != llavaHFVisionDefault || cfg.Vision.Patches() != 576 {
		t.Errorf("default tower %+v, %v", cfg.Vision, err)
	}
}

// TestLLaVAConfig checks the authors' keys: projector type, select layer,
// and a full CLIPConfig (model_type "clip") read through its vision_config.
func TestLLaVAConfig(t *testing.T) {
	raw, _ := parseRawConfig([]byte(`{"mm_vision_tower": "clip", "mm_projector_type": "mlp3x_gelu",
		"mm_vision_select_layer": -3, "hidden_size": 64, "num_attention_heads": 4, "rms_norm_eps": 1e-5}`), "x")
	clip, _ := parseRawConfig([]byte(`{"model_type": "clip", "vision_config": {"hidden_size": 1024, "num_attention_heads": 16, "num_hidden_layers": 24}}`), "c")
	cfg, err := raw.llavaConfig("x", clip, "c")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProjectorLayers != 3 || cfg.SelectLayer != -3 || cfg.VisionLayersUsed() != 22 || cfg.Vision.Hidden != 1024 || cfg.Text.Eps != 1e-5 {
		t.Errorf("config %+v", cfg)
	}
	for _, bad := range []string{
		`{"mm_vision_tower": "c", "mm_projector_type": "qformer"}`,
		`{"mm_vision_tower": "c", "mm_vision_select_feature": "cls_patch"}`,
		`{"mm_vision_tower": "c", "mm_use_im_start_end": true}`,
		`{"mm_vision_tower": "c", "mm_hidden_size": 7}`,
		`{"mm_vision_tower": "c", "hidden_act": "gelu"}`,
		`{"mm_vision_tower": "c", "rope_scaling": {"type": "linear", "factor": 2}}`,
		`{"mm_vision_tower": "c", "mm_vision_select_layer": -26}`,
		`{"mm_vision_tower": "c", "mm_vision_select_layer": 25}`,
		`{"mm_vision_tower": "c", "mm_projector_type": "mlp17x_gelu"}`,
		`{"mm_vision_tower": "c", "mm_projector_type": "mlp99999999999999999999x_gelu"}`,
	} {
		raw, _ := parseRawConfig([]byte(bad), "x")
		_, err := raw.llavaConfig("x", clip, "c")
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: error %v, want ErrConfig", bad, err)
			continue
		}
		key := strings.Split(bad, `"`)[5] // the key after mm_vision_tower
		if !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %q does not name %s", bad, err, key)
		}
	}
	// The CLIP tower's own config is checked, named by its file.
	bigClip, _ := parseRawConfig([]byte(`{"model_type": "clip", "vision_config": {"image_size": 8192}}`), "c")
	if _, err := raw.llavaConfig("x", bigClip, "clip/config.json"); !errors.Is(err, ErrConfig) ||
		!strings.Contains(err.Error(), "clip/config.json: vision_config.image_size is 8192") {
		t.Errorf("CLIP image_size 8192: %v", err)
	}
}

// FuzzConfig feeds arbitrary config.json bytes through layout detection and
// both config builders: they must return a config or an error, never panic,
// and a config they return must validate or be rejected by Validate.
func FuzzConfig(f *testing.F) {
	for _, p := range []string{"tiny/hf", "tiny/llava", "tiny/clip", "clip336/hf"} {
		if data, err := os.ReadFile(filepath.Join("..", "testdata", "checkpoints", p, "config.json")); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"mm_vision_tower": "../clip", "mm_projector_type": "mlp2x_gelu"}`))
	f.Add([]byte(`{"text_config": null, "vision_config": {"model_type": "clip"}}`))
	f.Add([]byte(`{"text_config": {"max_position_embeddings": 2147483648, "rope_theta": -1, "rms_norm_eps": 0}}`))
	f.Add([]byte(`{"mm_vision_tower": "c", "hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 1048576}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := parseRawConfig(data, "fuzz")
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		l, err := raw.layout("fuzz")
		if err != nil {
			return
		}
		var cfg llava.Config
		if l == LayoutHF {
			cfg, err = raw.hfConfig("fuzz")
		} else {
			cfg, err = raw.llavaConfig("fuzz", raw, "fuzz")
		}
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		// A config within the bounds sizes nothing from its fields alone.
		if tc := cfg.Text; tc.MaxPos > MaxPositions || tc.Hidden > MaxTextHidden || tc.Layers > MaxTextLayers ||
			!(tc.Eps > 0) || !(tc.RopeTheta > 0) || cfg.Vision.Patches() > MaxPatches {
			t.Fatalf("config %+v accepted outside the bounds", cfg)
		}
		// Sizing the pool from it never allocates, and never overflows
		// into a pool over the memory given.
		blocks, ctx, err := kvPool(Options{}, 16, cfg.Text, cfg.Vision.Patches(), 1<<30, hostResident)
		if err == nil && (ctx > cfg.Text.MaxPos || ctx > blocks*16 || int64(blocks)*kvBlockBytes(cfg.Text, 16, 4) > 1<<29) {
			t.Fatalf("pool of %d blocks, context %d for %+v", blocks, ctx, cfg.Text)
		}
		_ = cfg.Validate() // must not panic on any geometry
		_ = cfg.VisionLayersUsed()
	})
}
