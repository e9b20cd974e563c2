package presets

import "github.com/pancap-serve/pancap/model/weights"

// llavaConfig is config.json of the authors' LlavaLlamaForCausalLM, with
// the keys of a real LLaVA-1.5 checkpoint.
func llavaConfig(p Preset, dt weights.DType) map[string]any {
	l := p.LLM
	return map[string]any{
		"_name_or_path":              "pancap-" + p.Name,
		"architectures":              []string{"LlavaLlamaForCausalLM"},
		"attention_bias":             false,
		"bos_token_id":               1,
		"eos_token_id":               2,
		"freeze_mm_mlp_adapter":      false,
		"hidden_act":                 "silu",
		"hidden_size":                l.Hidden,
		"image_aspect_ratio":         "pad",
		"initializer_range":          initStd,
		"intermediate_size":          l.FFN,
		"max_position_embeddings":    l.MaxPositions,
		"mm_hidden_size":             p.Vision.Hidden,
		"mm_patch_merge_type":        "flat",
		"mm_projector_lr":            nil,
		"mm_projector_type":          "mlp2x_gelu",
		"mm_use_im_patch_token":      false,
		"mm_use_im_start_end":        false,
		"mm_vision_select_feature":   "patch",
		"mm_vision_select_layer":     -2,
		"mm_vision_tower":            "../" + CLIPDir,
		"model_type":                 "llava",
		"num_attention_heads":        l.Heads,
		"num_hidden_layers":          l.Layers,
		"num_key_value_heads":        l.KVHeads,
		"pad_token_id":               0,
		"pancap_random_weights":      true,
		"pretraining_tp":             1,
		"rms_norm_eps":               1e-5,
		"rope_scaling":               nil,
		"rope_theta":                 10000.0,
		"tie_word_embeddings":        false,
		"tokenizer_model_max_length": 2048,
		"tokenizer_padding_side":     "right",
		"torch_dtype":                dt.TorchName(),
		"transformers_version":       "4.37.2",
		"tune_mm_mlp_adapter":        false,
		"use_cache":                  true,
		"use_mm_proj":                true,
		"vocab_size":                 l.Vocab,
	}
}

// clipConfig is config.json of a transformers CLIPVisionModel.
func clipConfig(p Preset, dt weights.DType) map[string]any {
	v := p.Vision
	return map[string]any{
		"architectures":        []string{"CLIPVisionModel"},
		"attention_dropout":    0.0,
		"hidden_act":           "quick_gelu",
		"hidden_size":          v.Hidden,
		"image_size":           v.ImageSize,
		"initializer_factor":   1.0,
		"initializer_range":    initStd,
		"intermediate_size":    v.MLP,
		"layer_norm_eps":       1e-5,
		"model_type":           "clip_vision_model",
		"num_attention_heads":  v.Heads,
		"num_channels":         3,
		"num_hidden_layers":    v.Layers,
		"patch_size":           v.PatchSize,
		"projection_dim":       v.ProjDim,
		"torch_dtype":          dt.TorchName(),
		"transformers_version": "4.37.2",
	}
}

// preprocessorConfig is CLIP's preprocessor_config.json for the tower's
// input size.
func preprocessorConfig(p Preset) map[string]any {
	s := p.Vision.ImageSize
	return map[string]any{
		"crop_size":            map[string]int{"height": s, "width": s},
		"do_center_crop":       true,
		"do_convert_rgb":       true,
		"do_normalize":         true,
		"do_rescale":           true,
		"do_resize":            true,
		"image_mean":           []float64{0.48145466, 0.4578275, 0.40821073},
		"image_processor_type": "CLIPImageProcessor",
		"image_std":            []float64{0.26862954, 0.26130258, 0.27577711},
		"resample":             3,
		"rescale_factor":       1.0 / 255,
		"size":                 map[string]int{"shortest_edge": s},
	}
}

// tokenizerConfig is the slow LlamaTokenizer's tokenizer_config.json.
func tokenizerConfig() map[string]any {
	return map[string]any{
		"add_bos_token":                true,
		"add_eos_token":                false,
		"bos_token":                    "<s>",
		"clean_up_tokenization_spaces": false,
		"eos_token":                    "</s>",
		"legacy":                       true,
		"model_max_length":             2048,
		"pad_token":                    nil,
		"padding_side":                 "right",
		"sp_model_kwargs":              map[string]any{},
		"tokenizer_class":              "LlamaTokenizer",
		"unk_token":                    "<unk>",
	}
}

// specialTokens is special_tokens_map.json of the LLaMA tokenizer.
func specialTokens() map[string]any {
	tok := func(s string) map[string]any {
		return map[string]any{"content": s, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false}
	}
	return map[string]any{"bos_token": tok("<s>"), "eos_token": tok("</s>"), "unk_token": tok("<unk>")}
}
