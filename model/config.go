package model

import (
	"encoding/json"
	"errors"
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

// MaxConfigBytes bounds the size of a config.json (real ones are a few
// KiB).
const MaxConfigBytes = 1 << 20

// jsonKeyBefore matches the last object key before a JSON syntax error.
var jsonKeyBefore = regexp.MustCompile(`"([^"\\]{1,64})"\s*:\s*\S*$`)

func parseRawConfig(data []byte, where string) (*rawConfig, error) {
	var c rawConfig
	if err := json.Unmarshal(data, &c); err != nil {
		// A syntax error names no key: name the one before it (NaN and
		// Infinity, which Python's json writes, are not JSON).
		var se *json.SyntaxError
		if errors.As(err, &se) && se.Offset > 0 && se.Offset <= int64(len(data)) {
			if m := jsonKeyBefore.FindSubmatch(data[:se.Offset]); m != nil {
				return nil, fmt.Errorf("%w: %s: %v (after key %q; NaN and Infinity are not JSON)", ErrConfig, where, err, m[1])
			}
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, where, err)
	}
	return &c, nil
}

// Bounds on a config's geometry: what the largest public LLaMA and CLIP
// configs use, times a margin, so that a hostile or mistyped config.json is
// refused by name before anything is sized from it. LLaMA-3.1-405B has
// hidden 16384, 126 layers, 128 heads of 128, FFN 53248, vocabulary 128256
// and 131072 positions; rope_theta reaches 1e6 (Code Llama) to 5e5
// (LLaMA-3); the largest vision towers (InternViT-6B, ViT-22B) have hidden
// 3200–6144, 45–48 layers, MLP 24576, and inputs up to 448–1024 px.
const (
	MaxTextHidden    = 1 << 16 // hidden_size (LLM)
	MaxTextLayers    = 512     // num_hidden_layers (LLM)
	MaxTextHeads     = 1024    // num_attention_heads (LLM)
	MaxHeadDim       = 1024    // hidden_size / num_attention_heads
	MaxFFN           = 1 << 18 // intermediate_size (LLM)
	MaxVocab         = 1 << 20 // vocab_size
	MaxPositions     = 1 << 20 // max_position_embeddings
	MinRopeTheta     = 1.0     // rope_theta (below 1 the frequencies grow)
	MaxRopeTheta     = 1e9     // rope_theta
	MinEps           = 1e-12   // rms_norm_eps, layer_norm_eps (real ones: 1e-6 to 1e-5)
	MaxEps           = 1.0     // rms_norm_eps, layer_norm_eps
	MaxVisionHidden  = 1 << 14 // hidden_size (CLIP)
	MaxVisionLayers  = 256     // num_hidden_layers (CLIP)
	MaxVisionHeads   = 256     // num_attention_heads (CLIP)
	MaxVisionMLP     = 1 << 16 // intermediate_size (CLIP)
	MaxImageSize     = 4096    // image_size in pixels
	MaxPatches       = 1 << 16 // (image_size / patch_size)², image tokens per image
	MaxProjectorMLPs = 16      // N of mm_projector_type mlpNx_gelu
)

// checker records the first field of a config outside its bounds, named
// with its key path, e.g. "text_config.max_position_embeddings".
type checker struct {
	where  string // config file
	prefix string // key path of the object checked, "" or "text_config."
	err    error
}

func (c *checker) fail(key, format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: %s: %s%s %s", ErrConfig, c.where, c.prefix, key, fmt.Sprintf(format, args...))
	}
}

// int checks lo <= v <= hi.
func (c *checker) int(key string, v, lo, hi int) {
	if v < lo || v > hi {
		c.fail(key, "is %d, must be in [%d, %d]", v, lo, hi)
	}
}

// optInt checks an optional key: lo <= *p <= hi when present.
func (c *checker) optInt(key string, p *int, lo, hi int) {
	if p != nil {
		c.int(key, *p, lo, hi)
	}
}

// float checks lo <= v <= hi (NaN fails).
func (c *checker) float(key string, v, lo, hi float64) {
	if !(v >= lo && v <= hi) {
		c.fail(key, "is %g, must be in [%g, %g]", v, lo, hi)
	}
}

// check fails key with the message when ok is false.
func (c *checker) check(ok bool, key, format string, args ...any) {
	if !ok {
		c.fail(key, format, args...)
	}
}

// checkText checks a decoder's geometry; raw holds its keys (bos and eos
// ids are checked only when present, since the tokenizer's are used).
func checkText(where, prefix string, t llava.TextConfig, raw *rawConfig) error {
	c := &checker{where: where, prefix: prefix}
	c.int("hidden_size", t.Hidden, 2, MaxTextHidden)
	c.int("num_hidden_layers", t.Layers, 1, MaxTextLayers)
	c.int("num_attention_heads", t.Heads, 1, MaxTextHeads)
	if c.err == nil {
		hd := t.Hidden / t.Heads
		c.check(t.Hidden%t.Heads == 0 && hd%2 == 0 && hd <= MaxHeadDim, "hidden_size",
			"%d / num_attention_heads %d must be a whole, even head size of at most %d", t.Hidden, t.Heads, MaxHeadDim)
	}
	c.int("num_key_value_heads", t.KVHeads, 1, t.Heads)
	if c.err == nil {
		c.check(t.Heads%t.KVHeads == 0, "num_key_value_heads", "is %d, must divide num_attention_heads %d", t.KVHeads, t.Heads)
	}
	c.int("intermediate_size", t.FFN, 1, MaxFFN)
	c.int("vocab_size", t.VocabRows, 1, MaxVocab)
	c.int("max_position_embeddings", t.MaxPos, 1, MaxPositions)
	c.float("rms_norm_eps", floatOr(raw.RMSNormEps, float64(t.Eps)), MinEps, MaxEps)
	c.float("rope_theta", floatOr(raw.RopeTheta, float64(t.RopeTheta)), MinRopeTheta, MaxRopeTheta)
	c.optInt("bos_token_id", raw.BOSTokenID, 0, t.VocabRows-1)
	c.optInt("eos_token_id", raw.EOSTokenID, 0, t.VocabRows-1)
	return c.err
}

// checkVision checks a CLIP tower's geometry; eps is layer_norm_eps as
// written.
func checkVision(where, prefix string, v llava.VisionConfig, eps float64) error {
	c := &checker{where: where, prefix: prefix}
	c.int("hidden_size", v.Hidden, 1, MaxVisionHidden)
	c.int("num_hidden_layers", v.Layers, 1, MaxVisionLayers)
	c.int("num_attention_heads", v.Heads, 1, MaxVisionHeads)
	if c.err == nil {
		c.check(v.Hidden%v.Heads == 0, "hidden_size", "%d must be a multiple of num_attention_heads %d", v.Hidden, v.Heads)
	}
	c.int("intermediate_size", v.MLP, 1, MaxVisionMLP)
	c.int("image_size", v.ImageSize, 1, MaxImageSize)
	c.int("patch_size", v.PatchSize, 1, max(1, v.ImageSize))
	if c.err == nil {
		g := v.ImageSize / v.PatchSize
		c.check(v.ImageSize%v.PatchSize == 0 && g*g <= MaxPatches, "patch_size",
			"%d must divide image_size %d into at most %d patches", v.PatchSize, v.ImageSize, MaxPatches)
	}
	c.float("layer_norm_eps", eps, MinEps, MaxEps)
	c.check(v.Act == "quick_gelu" || v.Act == "gelu", "hidden_act", "is %q, want quick_gelu or gelu", v.Act)
	return c.err
}

// checkSelectLayer checks the vision feature layer (key: its name in the
// layout) against the tower's layers: hidden_states has layers+1 entries.
func checkSelectLayer(where, key string, layer int, v llava.VisionConfig) error {
	c := &checker{where: where}
	c.int(key, layer, -(v.Layers + 1), v.Layers)
	return c.err
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
// 4.37.2 saves only the keys that differ from them) and checks them against
// their bounds; prefix is the keys' path in where ("" or "text_config.").
func (c *rawConfig) textConfig(where, prefix string) (llava.TextConfig, int32, int32, error) {
	if c == nil {
		c = &rawConfig{}
	}
	if act := strOr(c.HiddenAct, "silu"); act != "silu" {
		return llava.TextConfig{}, 0, 0, fmt.Errorf("%w: %s: %shidden_act %q, want silu", ErrConfig, where, prefix, act)
	}
	if c.RopeScaling != nil {
		return llava.TextConfig{}, 0, 0, fmt.Errorf("%w: %s: %srope_scaling %v is not supported", ErrConfig, where, prefix, c.RopeScaling)
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
	if err := checkText(where, prefix, t, c); err != nil {
		return llava.TextConfig{}, 0, 0, err
	}
	return t, int32(intOr(c.BOSTokenID, 1)), int32(intOr(c.EOSTokenID, 2)), nil
}

// visionConfig reads CLIPVisionConfig keys with their defaults and checks
// them against their bounds; a full CLIPConfig (model_type "clip", as
// openai/clip-vit-large-patch14-336 ships) is read through its
// vision_config. prefix is the keys' path in where.
func (c *rawConfig) visionConfig(where, prefix string) (llava.VisionConfig, error) {
	if c.ModelType == "clip" {
		prefix += "vision_config."
		c = c.VisionConfig
		if c == nil {
			c = &rawConfig{}
		}
	}
	v := llava.VisionConfig{
		Hidden:    intOr(c.HiddenSize, 768),
		Layers:    intOr(c.NumHiddenLayers, 12),
		Heads:     intOr(c.NumAttentionHeads, 12),
		MLP:       intOr(c.IntermediateSize, 3072),
		ImageSize: intOr(c.ImageSize, 224),
		PatchSize: intOr(c.PatchSize, 32),
		Eps:       float32(floatOr(c.LayerNormEps, 1e-5)),
		Act:       strOr(c.HiddenAct, "quick_gelu"),
	}
	return v, checkVision(where, prefix, v, floatOr(c.LayerNormEps, float64(v.Eps)))
}

// llavaHFVisionDefault is LlavaConfig's vision tower when vision_config is
// absent: CLIP ViT-L/14 at 336 px.
var llavaHFVisionDefault = llava.VisionConfig{
	Hidden: 1024, Layers: 24, Heads: 16, MLP: 4096, ImageSize: 336, PatchSize: 14, Eps: 1e-5, Act: "quick_gelu",
}

var mlpGELU = regexp.MustCompile(`^mlp([1-9][0-9]*)x_gelu$`)

// hfConfig builds the engine config of a llava-hf checkpoint.
func (c *rawConfig) hfConfig(where string) (llava.Config, error) {
	text, bos, eos, err := c.TextConfig.textConfig(where, "text_config.")
	if err != nil {
		return llava.Config{}, err
	}
	vision := llavaHFVisionDefault
	if c.VisionConfig != nil {
		if vision, err = c.VisionConfig.visionConfig(where, "vision_config."); err != nil {
			return llava.Config{}, err
		}
	}
	selectLayer := intOr(c.VisionFeatureLayer, -2)
	if err := checkSelectLayer(where, "vision_feature_layer", selectLayer, vision); err != nil {
		return llava.Config{}, err
	}
	ck := &checker{where: where}
	ck.optInt("image_token_index", c.ImageTokenIndex, 0, text.VocabRows-1)
	if ck.err != nil {
		return llava.Config{}, ck.err
	}
	if s := strOr(c.VisionFeatureSelect, "default"); s != "default" {
		return llava.Config{}, fmt.Errorf("%w: %s: vision_feature_select_strategy %q, want default", ErrConfig, where, s)
	}
	if a := strOr(c.ProjectorHiddenAct, "gelu"); a != "gelu" {
		return llava.Config{}, fmt.Errorf("%w: %s: projector_hidden_act %q, want gelu", ErrConfig, where, a)
	}
	return llava.Config{
		Vision: vision, Text: text, SelectLayer: selectLayer,
		ProjectorLayers: 2, Vocab: text.VocabRows, BOS: bos, EOS: eos,
	}, nil
}

// llavaConfig builds the engine config of an authors' checkpoint given its
// CLIP tower's config (read from clipWhere).
func (c *rawConfig) llavaConfig(where string, clip *rawConfig, clipWhere string) (llava.Config, error) {
	text, bos, eos, err := c.textConfig(where, "")
	if err != nil {
		return llava.Config{}, err
	}
	vision, err := clip.visionConfig(clipWhere, "")
	if err != nil {
		return llava.Config{}, err
	}
	selectLayer := intOr(c.MMVisionSelectLayer, -2)
	if err := checkSelectLayer(where, "mm_vision_select_layer", selectLayer, vision); err != nil {
		return llava.Config{}, err
	}
	layers := 1
	switch p := strOr(c.MMProjectorType, "linear"); {
	case p == "linear":
	case mlpGELU.MatchString(p):
		n, err := strconv.Atoi(mlpGELU.FindStringSubmatch(p)[1])
		if err != nil || n > MaxProjectorMLPs {
			return llava.Config{}, fmt.Errorf("%w: %s: mm_projector_type %q has more than %d layers", ErrConfig, where, p, MaxProjectorMLPs)
		}
		layers = n
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
		Vision: vision, Text: text, SelectLayer: selectLayer,
		ProjectorLayers: layers, Vocab: text.VocabRows, BOS: bos, EOS: eos,
	}, nil
}
