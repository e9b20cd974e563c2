package presets

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/pancap-serve/pancap/model/weights"
)

// MaxShardBytes is the size above which Write shards model.safetensors.
const MaxShardBytes = 2 << 30

// Sub-directories of a directory written by Write.
const (
	LLaVADir = "llava" // the model directory: config.json, weights, tokenizer
	CLIPDir  = "clip"  // the CLIP tower, named "../clip" by mm_vision_tower
)

// initStd is the standard deviation of every random weight, transformers'
// initializer_range.
const initStd = 0.02

// chunk is the number of elements drawn from one RNG stream; chunks are
// filled in parallel and the result does not depend on the number of CPUs.
const chunk = 1 << 20

// param is one tensor to generate: normal(mean, initStd) values.
type param struct {
	weights.TensorSpec
	mean float32
}

// ModelDir returns the model directory (the one to load) of a checkpoint
// written by Write into dir.
func ModelDir(dir string) string { return filepath.Join(dir, LLaVADir) }

// Write writes preset p with random weights of dtype dt (F32, BF16 or F16),
// drawn from a generator seeded with seed, into dir: the authors' LLaVA
// layout in dir/llava (config.json, model.safetensors, sharded above
// MaxShardBytes, and the preset's tokenizer) and the CLIP tower as a
// CLIPVisionModel checkpoint in dir/clip. The same arguments always give
// the same bytes. Tensors are generated and written one at a time.
func Write(dir string, p Preset, dt weights.DType, seed uint64) error {
	return write(dir, p, dt, seed, MaxShardBytes)
}

func write(dir string, p Preset, dt weights.DType, seed uint64, shardBytes int64) error {
	if !dt.IsFloat() {
		return fmt.Errorf("presets: dtype %s is not F32, BF16 or F16", dt)
	}
	tok, err := p.TokenizerModel()
	if err != nil {
		return fmt.Errorf("presets: %s: %w", p.Name, err)
	}
	llavaDir, clipDir := filepath.Join(dir, LLaVADir), filepath.Join(dir, CLIPDir)
	for _, d := range []string{llavaDir, clipDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("presets: %w", err)
		}
	}
	files := map[string]any{
		filepath.Join(llavaDir, "config.json"):             llavaConfig(p, dt),
		filepath.Join(llavaDir, "tokenizer_config.json"):   tokenizerConfig(),
		filepath.Join(llavaDir, "special_tokens_map.json"): specialTokens(),
		filepath.Join(clipDir, "config.json"):              clipConfig(p, dt),
		filepath.Join(clipDir, "preprocessor_config.json"): preprocessorConfig(p),
	}
	for path, v := range files {
		if err := writeJSON(path, v); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(llavaDir, "tokenizer.model"), tok, 0o644); err != nil {
		return fmt.Errorf("presets: %w", err)
	}
	if err := writeSharded(llavaDir, llmParams(p, dt), seed, shardBytes); err != nil {
		return err
	}
	return writeSharded(clipDir, visionParams(p, dt), seed, shardBytes)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("presets: %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("presets: %w", err)
	}
	return nil
}

// llmParams lists the LLM and projector tensors of the authors' layout.
func llmParams(p Preset, dt weights.DType) []param {
	h, f, v := p.LLM.Hidden, p.LLM.FFN, p.LLM.Vocab
	kv := p.LLM.KVHeads * (h / p.LLM.Heads)
	w := func(name string, mean float32, shape ...int) param {
		return param{weights.TensorSpec{Name: name, DType: dt, Shape: shape}, mean}
	}
	ps := []param{w("model.embed_tokens.weight", 0, v, h)}
	for i := 0; i < p.LLM.Layers; i++ {
		l := fmt.Sprintf("model.layers.%d.", i)
		ps = append(ps,
			w(l+"input_layernorm.weight", 1, h),
			w(l+"self_attn.q_proj.weight", 0, h, h),
			w(l+"self_attn.k_proj.weight", 0, kv, h),
			w(l+"self_attn.v_proj.weight", 0, kv, h),
			w(l+"self_attn.o_proj.weight", 0, h, h),
			w(l+"post_attention_layernorm.weight", 1, h),
			w(l+"mlp.gate_proj.weight", 0, f, h),
			w(l+"mlp.up_proj.weight", 0, f, h),
			w(l+"mlp.down_proj.weight", 0, h, f),
		)
	}
	return append(ps,
		w("model.norm.weight", 1, h),
		w("lm_head.weight", 0, v, h),
		w("model.mm_projector.0.weight", 0, h, p.Vision.Hidden),
		w("model.mm_projector.0.bias", 0, h),
		w("model.mm_projector.2.weight", 0, h, h),
		w("model.mm_projector.2.bias", 0, h),
	)
}

// visionParams lists the tensors of a CLIPVisionModel checkpoint.
func visionParams(p Preset, dt weights.DType) []param {
	vi := p.Vision
	h := vi.Hidden
	w := func(name string, mean float32, shape ...int) param {
		return param{weights.TensorSpec{Name: "vision_model." + name, DType: dt, Shape: shape}, mean}
	}
	ps := []param{
		w("embeddings.class_embedding", 0, h),
		w("embeddings.patch_embedding.weight", 0, h, 3, vi.PatchSize, vi.PatchSize),
		w("embeddings.position_embedding.weight", 0, vi.Patches()+1, h),
		w("pre_layrnorm.weight", 1, h),
		w("pre_layrnorm.bias", 0, h),
	}
	for i := 0; i < vi.Layers; i++ {
		l := fmt.Sprintf("encoder.layers.%d.", i)
		for _, proj := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			ps = append(ps, w(l+"self_attn."+proj+".weight", 0, h, h), w(l+"self_attn."+proj+".bias", 0, h))
		}
		ps = append(ps,
			w(l+"layer_norm1.weight", 1, h), w(l+"layer_norm1.bias", 0, h),
			w(l+"mlp.fc1.weight", 0, vi.MLP, h), w(l+"mlp.fc1.bias", 0, vi.MLP),
			w(l+"mlp.fc2.weight", 0, h, vi.MLP), w(l+"mlp.fc2.bias", 0, h),
			w(l+"layer_norm2.weight", 1, h), w(l+"layer_norm2.bias", 0, h),
		)
	}
	return append(ps, w("post_layernorm.weight", 1, h), w("post_layernorm.bias", 0, h))
}

// writeSharded writes params as dir/model.safetensors, or as shards with a
// model.safetensors.index.json when they exceed shardBytes.
func writeSharded(dir string, ps []param, seed uint64, shardBytes int64) error {
	var shards [][]param
	var size, total int64
	for _, p := range ps {
		n := int64(p.DType.Size())
		for _, d := range p.Shape {
			n *= int64(d)
		}
		if len(shards) == 0 || (size+n > shardBytes && size > 0) {
			shards = append(shards, nil)
			size = 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], p)
		size += n
		total += n
	}
	if len(shards) == 1 {
		return writeShard(filepath.Join(dir, weights.SafetensorsFile), shards[0], seed)
	}
	weightMap := map[string]string{}
	for i, sh := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		if err := writeShard(filepath.Join(dir, name), sh, seed); err != nil {
			return err
		}
		for _, p := range sh {
			weightMap[p.Name] = name
		}
	}
	return writeJSON(filepath.Join(dir, weights.SafetensorsIndex), map[string]any{
		"metadata":   map[string]any{"total_size": total},
		"weight_map": weightMap,
	})
}

func writeShard(path string, ps []param, seed uint64) error {
	specs := make([]weights.TensorSpec, len(ps))
	for i, p := range ps {
		specs[i] = p.TensorSpec
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("presets: %w", err)
	}
	err = weights.WriteSafetensorsStream(f, specs, map[string]string{"format": "pt"}, func(i int, dst []byte) error {
		return fill(dst, ps[i], seed)
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("presets: %s: %w", path, err)
	}
	return nil
}

// fill writes the random values of p into dst: chunk after chunk of
// normal(p.mean, initStd) draws, each chunk from its own PCG stream keyed by
// the seed, the tensor name and the chunk index.
func fill(dst []byte, p param, seed uint64) error {
	es := p.DType.Size()
	n := len(dst) / es
	hash := fnv.New64a()
	hash.Write([]byte(p.Name))
	key := hash.Sum64()
	chunks := (n + chunk - 1) / chunk
	var wg sync.WaitGroup
	errs := make([]error, chunks)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for c := 0; c < chunks; c++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(c int) {
			defer func() { <-sem; wg.Done() }()
			lo, hi := c*chunk, min((c+1)*chunk, n)
			rng := rand.New(rand.NewPCG(seed, key+uint64(c)))
			vals := make([]float32, hi-lo) // [hi-lo]
			for i := range vals {
				vals[i] = p.mean + initStd*float32(rng.NormFloat64())
			}
			errs[c] = weights.EncodeFloat32(dst[lo*es:hi*es], p.DType, vals)
		}(c)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
