package llava

import "github.com/pancap-serve/pancap/kernels"

// VisionLayer holds one CLIP encoder layer (D = vision hidden, M = MLP size).
type VisionLayer struct {
	LN1W, LN1B kernels.Weight // [D], [D]   layer_norm1
	Q, K, V, O kernels.Weight // [D × D] each
	QB, KB     kernels.Weight // [D], [D]
	VB, OB     kernels.Weight // [D], [D]
	LN2W, LN2B kernels.Weight // [D], [D]   layer_norm2
	FC1        kernels.Weight // [M × D]
	FC1B       kernels.Weight // [M]
	FC2        kernels.Weight // [D × M]
	FC2B       kernels.Weight // [D]
}

// Linear is a weight with an optional bias.
type Linear struct {
	W kernels.Weight // [out × in]
	B kernels.Weight // [out], or nil
}

// TextLayer holds one LLaMA decoder layer (H = hidden, F = FFN size). The
// projections of one input are concatenated at load (Backend.ConcatRows),
// so each runs as one GEMM.
type TextLayer struct {
	AttnNorm kernels.Weight // [H]   input_layernorm
	QKV      kernels.Weight // [3H × H]   q_proj, k_proj, v_proj
	O        kernels.Weight // [H × H]
	MLPNorm  kernels.Weight // [H]   post_attention_layernorm
	GateUp   kernels.Weight // [2F × H]   gate_proj, up_proj
	Down     kernels.Weight // [H × F]
}

// Weights are all tensors of a LLaVA-1.5 model, uploaded to a backend
// (P = patches per image, V = true vocabulary).
type Weights struct {
	PatchEmbed kernels.Weight // [D × 3·patch·patch]   conv weight flattened (c, y, x)
	ClassEmbed kernels.Weight // [D]
	PosEmbed   kernels.Weight // [(P+1) × D]
	PreLNW     kernels.Weight // [D]   pre_layrnorm
	PreLNB     kernels.Weight // [D]
	Vision     []VisionLayer  // the first Config.VisionLayersUsed() layers only
	Projector  []Linear       // [H × D] then [H × H] …
	Embed      kernels.Weight // [V × H]   first V rows of embed_tokens
	Layers     []TextLayer    // [Text.Layers]
	Norm       kernels.Weight // [H]
	LMHead     kernels.Weight // [V × H]   first V rows of lm_head
}
