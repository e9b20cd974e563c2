package weights

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/pancap-serve/pancap/internal/safefile"
	"github.com/pancap-serve/pancap/kernels/cpu/linalg"
)

// PEFT file names of a LoRA adapter directory.
const (
	AdapterConfig      = "adapter_config.json"
	AdapterSafetensors = "adapter_model.safetensors"
	AdapterBin         = "adapter_model.bin"
	NonLoRATrainables  = "non_lora_trainables.bin"
)

// mergeBlock is the number of elements of B·A computed at a time.
const mergeBlock = 1 << 22

// peftPrefix starts every tensor name of a PEFT adapter.
const peftPrefix = "base_model.model."

// LoRAReport describes a merged adapter.
type LoRAReport struct {
	Rank       int      // r
	Alpha      float64  // lora_alpha
	Scale      float64  // alpha/r, or alpha/√r with use_rslora
	Merged     []string // base tensors updated with Scale·B·A, sorted
	Overridden []string // base tensors replaced from non_lora_trainables.bin, sorted
}

// loraConfig is the part of adapter_config.json the merge honours.
type loraConfig struct {
	PEFTType      string             `json:"peft_type"`
	R             int                `json:"r"`
	Alpha         float64            `json:"lora_alpha"`
	TargetModules json.RawMessage    `json:"target_modules"`
	UseRSLoRA     bool               `json:"use_rslora"`
	FanInFanOut   bool               `json:"fan_in_fan_out"`
	UseDoRA       bool               `json:"use_dora"`
	RankPattern   map[string]float64 `json:"rank_pattern"`
	AlphaPattern  map[string]float64 `json:"alpha_pattern"`
}

// targets returns a predicate telling whether a module (dotted name without
// the PEFT prefix) is targeted: a list names module suffixes, a string is a
// regular expression matched against the whole name, as in PEFT.
func (c *loraConfig) targets() (func(module string) bool, error) {
	var list []string
	if err := json.Unmarshal(c.TargetModules, &list); err == nil {
		return func(m string) bool {
			return slices.ContainsFunc(list, func(t string) bool { return m == t || strings.HasSuffix(m, "."+t) })
		}, nil
	}
	var pattern string
	if err := json.Unmarshal(c.TargetModules, &pattern); err != nil {
		return nil, fmt.Errorf("target_modules is neither a list nor a string")
	}
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		return nil, fmt.Errorf("target_modules: %v", err)
	}
	return re.MatchString, nil
}

// MergeLoRA merges the PEFT LoRA adapter in adapterDir into base: every
// targeted weight W becomes W + scale·(B·A), computed in float32 and stored
// back in W's dtype (rounded to nearest even), exactly as
// `(W.float() + scale*(B.float() @ A.float())).to(W.dtype)`. Tensors of
// non_lora_trainables.bin, when present, replace the base tensors of the
// same name (converted to the base dtype, as load_state_dict does).
//
// rename maps an adapter tensor's name with the "base_model.model." prefix
// removed (e.g. "model.layers.0.self_attn.q_proj.weight") to the name of the
// base tensor; nil keeps it. A lora_A without its lora_B, a shape mismatch or
// a target absent from base is an error naming the tensor.
func MergeLoRA(base *Store, adapterDir string, rename func(peftName string) string) (*LoRAReport, error) {
	if rename == nil {
		rename = func(s string) string { return s }
	}
	cfgPath := filepath.Join(adapterDir, AdapterConfig)
	raw, err := safefile.ReadFile(cfgPath, MaxIndexFile) // a regular file, bounded
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLoRA, err)
	}
	var cfg loraConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrLoRA, cfgPath, err)
	}
	switch {
	case cfg.PEFTType != "" && cfg.PEFTType != "LORA":
		err = fmt.Errorf("peft_type %q is not LORA", cfg.PEFTType)
	case cfg.R <= 0 || cfg.Alpha <= 0 || math.IsInf(cfg.Alpha, 0):
		err = fmt.Errorf("r %d and lora_alpha %g must be positive", cfg.R, cfg.Alpha)
	case cfg.UseDoRA:
		err = fmt.Errorf("use_dora is not supported")
	case len(cfg.RankPattern) > 0 || len(cfg.AlphaPattern) > 0:
		err = fmt.Errorf("rank_pattern and alpha_pattern are not supported")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrLoRA, cfgPath, err)
	}
	targeted, err := cfg.targets()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrLoRA, cfgPath, err)
	}
	rep := &LoRAReport{Rank: cfg.R, Alpha: cfg.Alpha, Scale: cfg.Alpha / float64(cfg.R)}
	if cfg.UseRSLoRA {
		rep.Scale = cfg.Alpha / math.Sqrt(float64(cfg.R))
	}

	file := filepath.Join(adapterDir, AdapterSafetensors)
	if _, err := os.Stat(file); err != nil {
		file = filepath.Join(adapterDir, AdapterBin)
	}
	adapter, err := OpenFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoRA, err)
	}
	defer adapter.Close()
	pairs, err := loraPairs(adapter, targeted)
	if err != nil {
		return nil, err
	}
	modules := make([]string, 0, len(pairs))
	for m := range pairs {
		modules = append(modules, m)
	}
	sort.Strings(modules)
	for _, m := range modules {
		name := rename(m + ".weight")
		w, err := base.Get(name)
		if err != nil {
			return nil, fmt.Errorf("%w: target of %s%s.lora_A: %w", ErrLoRA, peftPrefix, m, err)
		}
		merged, err := mergeOne(w, pairs[m][0], pairs[m][1], cfg.R, float32(rep.Scale), cfg.FanInFanOut)
		if err != nil {
			return nil, err
		}
		merged.File = fmt.Sprintf("%s + LoRA %s", w.File, file)
		base.Put(merged)
		rep.Merged = append(rep.Merged, name)
	}

	trainables := filepath.Join(adapterDir, NonLoRATrainables)
	if _, err := os.Stat(trainables); err == nil {
		if rep.Overridden, err = overrideFrom(base, trainables, rename); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// loraPairs groups the adapter's tensors by module into (A, B) pairs.
func loraPairs(adapter *Store, targeted func(string) bool) (map[string][2]*Tensor, error) {
	pairs := map[string][2]*Tensor{}
	for _, name := range adapter.Names() {
		rest, ok := strings.CutPrefix(name, peftPrefix)
		var module string
		var which int
		switch {
		case !ok:
		case strings.HasSuffix(rest, ".lora_A.weight"), strings.HasSuffix(rest, ".lora_A.default.weight"):
			module, _, _ = strings.Cut(rest, ".lora_A.")
		case strings.HasSuffix(rest, ".lora_B.weight"), strings.HasSuffix(rest, ".lora_B.default.weight"):
			module, _, _ = strings.Cut(rest, ".lora_B.")
			which = 1
		}
		if module == "" {
			return nil, fmt.Errorf("%w: %s: tensor %s is not a LoRA A or B weight", ErrLoRA, adapter.Origin(), name)
		}
		if !targeted(module) {
			return nil, fmt.Errorf("%w: %s: %s is not among target_modules", ErrLoRA, adapter.Origin(), name)
		}
		t, err := adapter.Get(name)
		if err != nil {
			return nil, err
		}
		p := pairs[module]
		p[which] = t
		pairs[module] = p
	}
	for m, p := range pairs {
		for i, half := range []string{"lora_A", "lora_B"} {
			if p[i] == nil {
				return nil, fmt.Errorf("%w: %s: %s%s.%s.weight missing (its pair is present)", ErrLoRA, adapter.Origin(), peftPrefix, m, half)
			}
		}
	}
	return pairs, nil
}

// mergeOne returns W + scale·(B·A) in W's dtype. W is [out × in] ([in × out]
// with fanInFanOut), A is [r × in] and B is [out × r].
func mergeOne(w, a, b *Tensor, r int, scale float32, fanInFanOut bool) (*Tensor, error) {
	if len(w.Shape) != 2 || len(a.Shape) != 2 || len(b.Shape) != 2 {
		return nil, fmt.Errorf("%w: %s %v, %s %v, %s %v: want matrices", ErrLoRA, w.Name, w.Shape, a.Name, a.Shape, b.Name, b.Shape)
	}
	out, in := w.Shape[0], w.Shape[1]
	if fanInFanOut {
		out, in = in, out
	}
	if a.Shape[0] != r || a.Shape[1] != in || b.Shape[0] != out || b.Shape[1] != r {
		return nil, fmt.Errorf("%w: %s %v and %s %v do not fit %s %v with r=%d", ErrLoRA, a.Name, a.Shape, b.Name, b.Shape, w.Name, w.Shape, r)
	}
	wf, err := w.Float32() // [out × in] or [in × out]
	if err != nil {
		return nil, err
	}
	af, err := a.Float32() // [r × in]
	if err != nil {
		return nil, err
	}
	bf, err := b.Float32() // [out × r]
	if err != nil {
		return nil, err
	}
	at := make([]float32, in*r) // [in × r]: Aᵀ, so that B·A = B·(Aᵀ)ᵀ
	for p := 0; p < r; p++ {
		for j, v := range af[p*in : (p+1)*in] {
			at[j*r+p] = v
		}
	}
	rows := max(1, min(out, mergeBlock/in))
	d := make([]float32, rows*in) // [rows × in]: a block of rows of B·A
	for i0 := 0; i0 < out; i0 += rows {
		n := min(rows, out-i0)
		linalg.MatMulF32(d[:n*in], bf[i0*r:(i0+n)*r], at, n, in, r)
		for i := 0; i < n; i++ {
			for j, v := range d[i*in : (i+1)*in] {
				if fanInFanOut {
					wf[j*out+i0+i] += scale * v
				} else {
					wf[(i0+i)*in+j] += scale * v
				}
			}
		}
	}
	return FromFloat32(w.Name, w.DType, w.Shape, wf)
}

// overrideFrom replaces base tensors with those of a non_lora_trainables.bin
// file, converted to the base dtype, and returns the names replaced.
func overrideFrom(base *Store, file string, rename func(string) string) ([]string, error) {
	extra, err := OpenFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLoRA, err)
	}
	defer extra.Close()
	var names []string
	for _, n := range extra.Names() {
		name := rename(strings.TrimPrefix(n, peftPrefix))
		old, err := base.Get(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: target of %s: %w", ErrLoRA, file, n, err)
		}
		t, _ := extra.Get(n)
		if err := t.Expect(old.Shape...); err != nil {
			return nil, fmt.Errorf("%w: replacing %s: %w", ErrLoRA, name, err)
		}
		v, err := t.Float32()
		if err != nil {
			return nil, err
		}
		nt, err := FromFloat32(name, old.DType, old.Shape, v)
		if err != nil {
			return nil, err
		}
		nt.File = file
		base.Put(nt)
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}
