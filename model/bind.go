package model

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/model/llava"
	"github.com/pancap-serve/pancap/model/weights"
)

// names are the tensor-name prefixes of a layout.
type names struct {
	vision    string             // CLIP vision model, e.g. "vision_model."
	projector func(i int) string // Linear i of the projector
	llm       string             // LLaMA model, e.g. "model."
	lmHead    string             // lm_head weight
}

func layoutNames(l Layout) names {
	if l == LayoutHF {
		return names{
			vision:    "vision_tower.vision_model.",
			projector: func(i int) string { return fmt.Sprintf("multi_modal_projector.linear_%d.", i+1) },
			llm:       "language_model.model.",
			lmHead:    "language_model.lm_head.weight",
		}
	}
	return names{
		vision:    "vision_model.",
		projector: func(i int) string { return fmt.Sprintf("model.mm_projector.%d.", 2*i) },
		llm:       "model.",
		lmHead:    "lm_head.weight",
	}
}

// binder uploads named tensors to a backend, collecting every error so a
// broken checkpoint is reported whole.
type binder struct {
	be     kernels.Backend
	layout Layout
	cfg    llava.Config
	errs   []error
	dtype  weights.DType // of the token embedding
	bytes  int64
	finite []*weights.Tensor // bound tensors whose values checkFinite scans
}

// checkFinite scans every bound tensor for NaN and infinities, in parallel
// (it reads all weight bytes once), adding an error per bad tensor in
// binding order.
func (b *binder) checkFinite() {
	errs := make([]error, len(b.finite))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(b.finite)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(b.finite); i = int(next.Add(1) - 1) {
				errs[i] = weights.CheckFinite(b.finite[i])
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.errs = append(b.errs, err)
		}
	}
	b.finite = nil
}

func kernelDType(d weights.DType) (kernels.DType, bool) {
	switch d {
	case weights.F32:
		return kernels.F32, true
	case weights.BF16:
		return kernels.BF16, true
	case weights.F16:
		return kernels.F16, true
	}
	return 0, false
}

// get binds the tensor name of s, which must have shape want. When rows > 0
// only the first rows rows of the outermost dimension are used (vocab
// padding); when as is set the tensor is viewed with that shape (the patch
// convolution as a matrix).
func (b *binder) get(s *weights.Store, name string, want []int, rows int, as []int) kernels.Weight {
	t, err := s.Get(name)
	if err != nil {
		b.errs = append(b.errs, err)
		return nil
	}
	where := t.File + ": " + name
	if err := t.Expect(want...); err != nil {
		b.errs = append(b.errs, err)
		return nil
	}
	dt, ok := kernelDType(t.DType)
	if !ok {
		b.errs = append(b.errs, fmt.Errorf("%w: %s is %s, want F32, BF16 or F16", weights.ErrDType, where, t.DType))
		return nil
	}
	data, shape := t.Data, want
	if rows > 0 {
		shape = append([]int{rows}, want[1:]...)
		data = data[:len(data)/want[0]*rows]
	}
	if as != nil {
		shape = as
	}
	b.finite = append(b.finite, &weights.Tensor{Name: name, File: t.File, DType: t.DType, Shape: shape, Data: data})
	w, err := b.be.LoadWeight(dt, shape, data)
	if err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: %w", where, err))
		return nil
	}
	b.bytes += int64(len(data))
	return w
}

// concat joins bound matrices of one input row-wise (Backend.ConcatRows),
// named name in errors; nil when a part failed to bind (its error is
// already collected). A checkpoint whose parts differ in dtype fails here.
func (b *binder) concat(name string, parts ...kernels.Weight) kernels.Weight {
	for _, p := range parts {
		if p == nil {
			return nil
		}
	}
	w, err := b.be.ConcatRows(parts)
	if err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: %w", name, err))
		return nil
	}
	return w
}

// vec and mat bind 1-D and 2-D tensors.
func (b *binder) vec(s *weights.Store, name string, n int) kernels.Weight {
	return b.get(s, name, []int{n}, 0, nil)
}

func (b *binder) mat(s *weights.Store, name string, rows, cols int) kernels.Weight {
	return b.get(s, name, []int{rows, cols}, 0, nil)
}

// bind binds every tensor the engine computes with: the LLM and projector
// from main, the CLIP tower from vision.
func (b *binder) bind(main, vision *weights.Store) llava.Weights {
	n, vc, tc := layoutNames(b.layout), b.cfg.Vision, b.cfg.Text
	D, P, ps := vc.Hidden, vc.Patches(), vc.PatchSize
	var w llava.Weights
	v := n.vision
	w.PatchEmbed = b.get(vision, v+"embeddings.patch_embedding.weight", []int{D, 3, ps, ps}, 0, []int{D, 3 * ps * ps})
	w.ClassEmbed = b.vec(vision, v+"embeddings.class_embedding", D)
	w.PosEmbed = b.mat(vision, v+"embeddings.position_embedding.weight", P+1, D)
	w.PreLNW = b.vec(vision, v+"pre_layrnorm.weight", D)
	w.PreLNB = b.vec(vision, v+"pre_layrnorm.bias", D)
	for i := range b.cfg.VisionLayersUsed() {
		p := fmt.Sprintf("%sencoder.layers.%d.", v, i)
		w.Vision = append(w.Vision, llava.VisionLayer{
			LN1W: b.vec(vision, p+"layer_norm1.weight", D),
			LN1B: b.vec(vision, p+"layer_norm1.bias", D),
			Q:    b.mat(vision, p+"self_attn.q_proj.weight", D, D),
			QB:   b.vec(vision, p+"self_attn.q_proj.bias", D),
			K:    b.mat(vision, p+"self_attn.k_proj.weight", D, D),
			KB:   b.vec(vision, p+"self_attn.k_proj.bias", D),
			V:    b.mat(vision, p+"self_attn.v_proj.weight", D, D),
			VB:   b.vec(vision, p+"self_attn.v_proj.bias", D),
			O:    b.mat(vision, p+"self_attn.out_proj.weight", D, D),
			OB:   b.vec(vision, p+"self_attn.out_proj.bias", D),
			LN2W: b.vec(vision, p+"layer_norm2.weight", D),
			LN2B: b.vec(vision, p+"layer_norm2.bias", D),
			FC1:  b.mat(vision, p+"mlp.fc1.weight", vc.MLP, D),
			FC1B: b.vec(vision, p+"mlp.fc1.bias", vc.MLP),
			FC2:  b.mat(vision, p+"mlp.fc2.weight", D, vc.MLP),
			FC2B: b.vec(vision, p+"mlp.fc2.bias", D),
		})
	}
	H := tc.Hidden
	in := D
	for i := range b.cfg.ProjectorLayers {
		p := n.projector(i)
		w.Projector = append(w.Projector, llava.Linear{W: b.mat(main, p+"weight", H, in), B: b.vec(main, p+"bias", H)})
		in = H
	}
	embed := n.llm + "embed_tokens.weight"
	if t, err := main.Get(embed); err == nil {
		b.dtype = t.DType
	}
	w.Embed = b.get(main, embed, []int{tc.VocabRows, H}, b.cfg.Vocab, nil)
	for i := range tc.Layers {
		p := fmt.Sprintf("%slayers.%d.", n.llm, i)
		w.Layers = append(w.Layers, llava.TextLayer{
			AttnNorm: b.vec(main, p+"input_layernorm.weight", H),
			QKV: b.concat(p+"self_attn.qkv",
				b.mat(main, p+"self_attn.q_proj.weight", H, H),
				b.mat(main, p+"self_attn.k_proj.weight", H, H),
				b.mat(main, p+"self_attn.v_proj.weight", H, H)),
			O:       b.mat(main, p+"self_attn.o_proj.weight", H, H),
			MLPNorm: b.vec(main, p+"post_attention_layernorm.weight", H),
			GateUp: b.concat(p+"mlp.gate_up",
				b.mat(main, p+"mlp.gate_proj.weight", tc.FFN, H),
				b.mat(main, p+"mlp.up_proj.weight", tc.FFN, H)),
			Down: b.mat(main, p+"mlp.down_proj.weight", H, tc.FFN),
		})
	}
	w.Norm = b.vec(main, n.llm+"norm.weight", H)
	w.LMHead = b.get(main, n.lmHead, []int{tc.VocabRows, H}, b.cfg.Vocab, nil)
	b.checkFinite()
	return w
}

// expectedUnused tells the tensors a LLaVA checkpoint holds that the engine
// rightly never reads: CLIP's post_layernorm and the encoder layers after
// the selected hidden state, CLIP position ids, a full CLIP checkpoint's
// text model and projections, and LLaMA's cached rotary frequencies.
func expectedUnused(name string, l Layout, cfg llava.Config) bool {
	v := layoutNames(l).vision
	if strings.HasSuffix(name, "rotary_emb.inv_freq") || strings.HasSuffix(name, "embeddings.position_ids") {
		return true
	}
	if l == LayoutLLaVA && strings.HasPrefix(name, "model.vision_tower.") {
		return true // a tower saved with the LLM; LLaVA reloads it from mm_vision_tower
	}
	if l == LayoutLLaVA && !strings.HasPrefix(name, v) && !strings.HasPrefix(name, "model.") && !strings.HasPrefix(name, "lm_head.") {
		return true // text_model.*, visual_projection, logit_scale of a CLIPModel checkpoint
	}
	if !strings.HasPrefix(name, v) {
		return false
	}
	rest := name[len(v):]
	if strings.HasPrefix(rest, "post_layernorm.") {
		return true
	}
	var layer int
	var tail string
	if _, err := fmt.Sscanf(rest, "encoder.layers.%d.%s", &layer, &tail); err == nil {
		return layer >= cfg.VisionLayersUsed()
	}
	return false
}
