package model

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"github.com/pancap-serve/pancap/model/llava"
)

// Layout is a checkpoint's on-disk arrangement.
type Layout string

// The two layouts of LLaVA-1.5 checkpoints.
const (
	// LayoutHF is transformers' LlavaForConditionalGeneration (llava-hf):
	// vision_tower.*, multi_modal_projector.*, language_model.*.
	LayoutHF Layout = "llava-hf"
	// LayoutLLaVA is the authors' LlavaLlamaForCausalLM: model.*, lm_head,
	// model.mm_projector.*, with the CLIP tower in its own directory named
	// by mm_vision_tower.
	LayoutLLaVA Layout = "llava"
)

// rawConfig holds every config.json key the loader reads, from either
// layout (and from a CLIP tower's config). Pointers tell absent keys from
// zero values so that transformers' defaults can apply.
type rawConfig struct {
	Architectures []string `json:"architectures"`
	ModelType     string   `json:"model_type"`
	TorchDType    string   `json:"torch_dtype"`
	NameOrPath    string   `json:"_name_or_path"`
	// RandomWeights is set by our own preset generator (pancap model
	// generate), so a generated checkpoint says so wherever it is served.
	RandomWeights bool `json:"pancap_random_weights"`

	// LLaMA keys (authors' layout top level, llava-hf text_config).
	HiddenSize        *int     `json:"hidden_size"`
	IntermediateSize  *int     `json:"intermediate_size"`
	NumHiddenLayers   *int     `json:"num_hidden_layers"`
	NumAttentionHeads *int     `json:"num_attention_heads"`
	NumKeyValueHeads  *int     `json:"num_key_value_heads"`
	VocabSize         *int     `json:"vocab_size"`
	RMSNormEps        *float64 `json:"rms_norm_eps"`
	RopeTheta         *float64 `json:"rope_theta"`
	MaxPositions      *int     `json:"max_position_embeddings"`
	BOSTokenID        *int     `json:"bos_token_id"`
	EOSTokenID        *int     `json:"eos_token_id"`
	HiddenAct         *string  `json:"hidden_act"`
	RopeScaling       any      `json:"rope_scaling"`

	// CLIP keys.
	ImageSize    *int     `json:"image_size"`
	PatchSize    *int     `json:"patch_size"`
	LayerNormEps *float64 `json:"layer_norm_eps"`

	// Authors' LLaVA keys.
	MMVisionTower         *string `json:"mm_vision_tower"`
	MMProjectorType       *string `json:"mm_projector_type"`
	MMVisionSelectLayer   *int    `json:"mm_vision_select_layer"`
	MMVisionSelectFeature *string `json:"mm_vision_select_feature"`
	MMHiddenSize          *int    `json:"mm_hidden_size"`
	MMUseImStartEnd       bool    `json:"mm_use_im_start_end"`
	ImageAspectRatio      *string `json:"image_aspect_ratio"`

	// llava-hf keys.
	TextConfig          *rawConfig `json:"text_config"`
	VisionConfig        *rawConfig `json:"vision_config"`
	VisionFeatureLayer  *int       `json:"vision_feature_layer"`
	VisionFeatureSelect *string    `json:"vision_feature_select_strategy"`
	ProjectorHiddenAct  *string    `json:"projector_hidden_act"`
	ImageTokenIndex     *int       `json:"image_token_index"`
}

func parseRawConfig(data []byte, where string) (*rawConfig, error) {
	var c rawConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, where, err)
	}
	return &c, nil
}

// layout tells the checkpoint's layout from its config.
func (c *rawConfig) layout(where string) (Layout, error) {
	switch {
	case c.MMVisionTower != nil:
		return LayoutLLaVA, nil
	case c.TextConfig != nil || c.VisionConfig != nil || slices.Contains(c.Architectures, "LlavaForConditionalGeneration"):
		return LayoutHF, nil
	}
	return "", fmt.Errorf("%w: %s is neither a llava-hf config (text_config, vision_config) nor an authors' LLaVA config (mm_vision_tower)", ErrConfig, where)
}

func intOr(p *int, def int) int {
	if p != nil {
		return *p
	}
	return def
}

func floatOr(p *float64, def float64) float64 {
	if p != nil {
		return *p
	}
	return def
}

func strOr(p *string, def string) string {
	if p != nil {
		return *p
	}
	return def
}

// textConfig reads LLaMA keys with LlamaConfig's defaults (transformers
// 4.37.2 saves only the keys that differ from them).
func (c *rawConfig) textConfig(where string) (llava.TextConfig, int32, int32, error) {
	if c == nil {
		c = &rawConfig{}
	}
	if act := strOr(c.HiddenAct, "silu"); act != "silu" {
		return llava.TextConfig{}, 0, 0, fmt.Errorf("%w: %s: LLM hidden_act %q, want silu", ErrConfig, where, act)
	}
	if c.RopeScaling != nil {
		return llava.TextConfig{}, 0, 0, fmt.Errorf("%w: %s: rope_scaling %v is not supported", ErrConfig, where, c.RopeScaling)
	}
	heads := intOr(c.NumAttentionHeads, 32)
	t := llava.TextConfig{
		Hidden:    intOr(c.HiddenSize, 4096),
		Layers:    intOr(c.NumHiddenLayers, 32),
		Heads:     heads,
		KVHeads:   intOr(c.NumKeyValueHeads, heads),
		FFN:       intOr(c.IntermediateSize, 11008),
		VocabRows: intOr(c.VocabSize, 32000),
		Eps:       float32(floatOr(c.RMSNormEps, 1e-6)),
		RopeTheta: float32(floatOr(c.RopeTheta, 10000)),
		MaxPos:    intOr(c.MaxPositions, 2048),
	}
	return t, int32(intOr(c.BOSTokenID, 1)), int32(intOr(c.EOSTokenID, 2)), nil
}

// visionConfig reads CLIPVisionConfig keys with their defaults; a full
// CLIPConfig (model_type "clip", as openai/clip-vit-large-patch14-336 ships)
// is read through its vision_config.
func (c *rawConfig) visionConfig() llava.VisionConfig {
	if c.ModelType == "clip" {
		c = c.VisionConfig
		if c == nil {
			c = &rawConfig{}
		}
	}
	return llava.VisionConfig{
		Hidden:    intOr(c.HiddenSize, 768),
		Layers:    intOr(c.NumHiddenLayers, 12),
		Heads:     intOr(c.NumAttentionHeads, 12),
		MLP:       intOr(c.IntermediateSize, 3072),
		ImageSize: intOr(c.ImageSize, 224),
		PatchSize: intOr(c.PatchSize, 32),
		Eps:       float32(floatOr(c.LayerNormEps, 1e-5)),
		Act:       strOr(c.HiddenAct, "quick_gelu"),
	}
}

// llavaHFVisionDefault is LlavaConfig's vision tower when vision_config is
// absent: CLIP ViT-L/14 at 336 px.
var llavaHFVisionDefault = llava.VisionConfig{
	Hidden: 1024, Layers: 24, Heads: 16, MLP: 4096, ImageSize: 336, PatchSize: 14, Eps: 1e-5, Act: "quick_gelu",
}

var mlpGELU = regexp.MustCompile(`^mlp([1-9][0-9]*)x_gelu$`)

// hfConfig builds the engine config of a llava-hf checkpoint.
func (c *rawConfig) hfConfig(where string) (llava.Config, error) {
	text, bos, eos, err := c.TextConfig.textConfig(where)
	if err != nil {
		return llava.Config{}, err
	}
	vision := llavaHFVisionDefault
	if c.VisionConfig != nil {
		vision = c.VisionConfig.visionConfig()
	}
	if s := strOr(c.VisionFeatureSelect, "default"); s != "default" {
		return llava.Config{}, fmt.Errorf("%w: %s: vision_feature_select_strategy %q, want default", ErrConfig, where, s)
	}
	if a := strOr(c.ProjectorHiddenAct, "gelu"); a != "gelu" {
		return llava.Config{}, fmt.Errorf("%w: %s: projector_hidden_act %q, want gelu", ErrConfig, where, a)
	}
	return llava.Config{
		Vision: vision, Text: text, SelectLayer: intOr(c.VisionFeatureLayer, -2),
		ProjectorLayers: 2, Vocab: text.VocabRows, BOS: bos, EOS: eos,
	}, nil
}

// llavaConfig builds the engine config of an authors' checkpoint given its
// CLIP tower's config.
func (c *rawConfig) llavaConfig(where string, clip *rawConfig) (llava.Config, error) {
	text, bos, eos, err := c.textConfig(where)
	if err != nil {
		return llava.Config{}, err
	}
	vision := clip.visionConfig()
	layers := 1
	switch p := strOr(c.MMProjectorType, "linear"); {
	case p == "linear":
	case mlpGELU.MatchString(p):
		layers, _ = strconv.Atoi(mlpGELU.FindStringSubmatch(p)[1])
	default:
		return llava.Config{}, fmt.Errorf("%w: %s: mm_projector_type %q, want linear or mlpNx_gelu", ErrConfig, where, p)
	}
	if f := strOr(c.MMVisionSelectFeature, "patch"); f != "patch" {
		return llava.Config{}, fmt.Errorf("%w: %s: mm_vision_select_feature %q, want patch", ErrConfig, where, f)
	}
	if c.MMUseImStartEnd {
		return llava.Config{}, fmt.Errorf("%w: %s: mm_use_im_start_end is not supported", ErrConfig, where)
	}
	if h := intOr(c.MMHiddenSize, vision.Hidden); h != vision.Hidden {
		return llava.Config{}, fmt.Errorf("%w: %s: mm_hidden_size %d but the vision tower's hidden size is %d", ErrConfig, where, h, vision.Hidden)
	}
	return llava.Config{
		Vision: vision, Text: text, SelectLayer: intOr(c.MMVisionSelectLayer, -2),
		ProjectorLayers: layers, Vocab: text.VocabRows, BOS: bos, EOS: eos,
	}, nil
}
