package presets

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/pancap-serve/pancap/model/weights"
)

func TestWriteTinyReopens(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, Tiny, weights.BF16, 7); err != nil {
		t.Fatal(err)
	}
	for sub, ps := range map[string][]param{LLaVADir: llmParams(Tiny, weights.BF16), CLIPDir: visionParams(Tiny, weights.BF16)} {
		s, err := weights.Open(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Names()) != len(ps) {
			t.Errorf("%s: %d tensors, want %d", sub, len(s.Names()), len(ps))
		}
		for _, p := range ps {
			tt, err := s.Get(p.Name)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.Expect(p.Shape...); err != nil || tt.DType != weights.BF16 {
				t.Errorf("%v (%s)", err, tt.DType)
			}
			v, _ := tt.Float32()
			var sum, sq float64
			for _, x := range v {
				sum += float64(x)
				sq += float64(x) * float64(x)
			}
			mean := sum / float64(len(v))
			std := math.Sqrt(sq/float64(len(v)) - mean*mean)
			if math.Abs(mean-float64(p.mean)) > 0.02 || (len(v) > 1000 && math.Abs(std-initStd) > 0.002) {
				t.Errorf("%s: mean %.4f std %.4f, want %.1f and %.2f", p.Name, mean, std, p.mean, initStd)
			}
		}
		s.Close()
	}
	s, _ := weights.Open(ModelDir(dir))
	defer s.Close()
	for name, shape := range map[string][]int{
		"model.embed_tokens.weight":              {1000, 64},
		"model.layers.1.mlp.down_proj.weight":    {64, 176},
		"model.mm_projector.0.weight":            {64, 64},
		"lm_head.weight":                         {1000, 64},
		"model.layers.0.self_attn.k_proj.weight": {64, 64},
	} {
		tt, err := s.Get(name)
		if err != nil || tt.Expect(shape...) != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, LLaVADir, "config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["mm_vision_tower"] != "../clip" || cfg["torch_dtype"] != "bfloat16" || cfg["vocab_size"] != 1000.0 || cfg["mm_hidden_size"] != 64.0 {
		t.Errorf("config %v", cfg)
	}
	tok, _ := os.ReadFile(filepath.Join(dir, LLaVADir, "tokenizer.model"))
	want, _ := os.ReadFile("tokenizers/tiny.model")
	if len(tok) == 0 || !bytes.Equal(tok, want) {
		t.Error("tokenizer.model is not the preset's")
	}
}

func TestWriteDeterministicAndSharded(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	if err := Write(a, Tiny, weights.F32, 1); err != nil {
		t.Fatal(err)
	}
	if err := write(b, Tiny, weights.F32, 1, 200_000); err != nil {
		t.Fatal(err)
	}
	if err := Write(c, Tiny, weights.F32, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b, LLaVADir, weights.SafetensorsIndex)); err != nil {
		t.Fatalf("no index with a small shard limit: %v", err)
	}
	sa, _ := weights.Open(ModelDir(a))
	sb, err := weights.Open(ModelDir(b))
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := weights.Open(ModelDir(c))
	defer sa.Close()
	defer sb.Close()
	defer sc.Close()
	if sb.Origin() != filepath.Join(b, LLaVADir, weights.SafetensorsIndex) {
		t.Errorf("sharded store opened from %s", sb.Origin())
	}
	for _, name := range sa.Names() {
		ta, _ := sa.Get(name)
		tb, err := sb.Get(name)
		if err != nil || !bytes.Equal(ta.Data, tb.Data) {
			t.Fatalf("%s differs between single and sharded writes: %v", name, err)
		}
		if tc, _ := sc.Get(name); bytes.Equal(ta.Data, tc.Data) {
			t.Errorf("%s is the same with another seed", name)
		}
	}
}

func TestPresets(t *testing.T) {
	for _, name := range []string{"tiny", "bench", "13b"} {
		p, err := Get(name)
		if err != nil || p.Name != name {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := p.TokenizerModel(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if p.LLM.Hidden%p.LLM.Heads != 0 || p.Vision.Hidden%p.Vision.Heads != 0 {
			t.Errorf("%s: heads do not divide hidden", name)
		}
	}
	if Bench.Vision.Patches() != 576 || Tiny.Vision.Patches() != 16 || B13.LLM.Hidden != 5120 {
		t.Error("geometry differs from DESIGN.md §7")
	}
	if _, err := Get("7b"); err == nil {
		t.Error("unknown preset accepted")
	}
	if err := Write(t.TempDir(), Tiny, weights.I8, 1); err == nil {
		t.Error("I8 weights accepted")
	}
}

// BenchmarkWriteBench writes the 330 MB bench checkpoint (run with
// -benchtime 1x; it needs that much free disk).
func BenchmarkWriteBench(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if err := Write(b.TempDir(), Bench, weights.BF16, uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
}
