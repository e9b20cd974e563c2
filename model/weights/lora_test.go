package weights

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// assertSameWeights compares merged tensors with torch's, allowing float32
// results one unit in the last place off (summation order differs from
// torch's GEMM) and bf16/fp16 results identical but for 1 ulp on at most one
// element in twenty (a float32 ulp can flip a rounding).
func assertSameWeights(t *testing.T, got, want *Tensor) {
	t.Helper()
	if got.DType != want.DType || got.Expect(want.Shape...) != nil {
		t.Fatalf("%s: got %s %v, want %s %v", want.Name, got.DType, got.Shape, want.DType, want.Shape)
	}
	es := got.DType.Size()
	off := 0
	for i := 0; i < got.Len(); i++ {
		var g, w int64
		if es == 4 {
			g, w = int64(binary.LittleEndian.Uint32(got.Data[4*i:])), int64(binary.LittleEndian.Uint32(want.Data[4*i:]))
		} else {
			g, w = int64(binary.LittleEndian.Uint16(got.Data[2*i:])), int64(binary.LittleEndian.Uint16(want.Data[2*i:]))
		}
		switch d := g - w; {
		case d == 0:
		case (d == 1 || d == -1) && (es == 4 || off < got.Len()/20+1):
			off++
		default:
			t.Fatalf("%s[%d]: bits %#x, torch %#x", want.Name, i, g, w)
		}
	}
}

func TestMergeLoRAMatchesTorch(t *testing.T) {
	for _, c := range []struct {
		adapter, merged string
		scale           float64
	}{
		{"testdata/lora/adapter", "testdata/lora/merged.safetensors", 2},
		{"testdata/lora/adapter_rs", "testdata/lora/merged_rs.safetensors", 4},
	} {
		t.Run(filepath.Base(c.adapter), func(t *testing.T) {
			base, err := Open("testdata/lora/base")
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			rep, err := MergeLoRA(base, c.adapter, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Scale != c.scale || rep.Rank != 4 || rep.Alpha != 8 {
				t.Errorf("report %+v", rep)
			}
			wantMerged := []string{"model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight"}
			if !slices.Equal(rep.Merged, wantMerged) || !slices.Equal(rep.Overridden, []string{"model.mm_projector.0.weight"}) {
				t.Errorf("merged %v, overridden %v", rep.Merged, rep.Overridden)
			}
			ref, err := OpenFile(c.merged)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			for _, name := range ref.Names() {
				g, err := base.Get(name)
				if err != nil {
					t.Fatal(err)
				}
				w, _ := ref.Get(name)
				assertSameWeights(t, g, w)
			}
			if got := base.Unused(); !slices.Equal(got, []string{"model.embed_tokens.weight"}) {
				t.Errorf("Unused = %v", got)
			}
		})
	}
}

func TestMergeLoRARename(t *testing.T) {
	dir := t.TempDir()
	src, _ := os.ReadFile("testdata/lora/base/model.safetensors")
	ts, _, err := parseSafetensors("base", src)
	if err != nil {
		t.Fatal(err)
	}
	var renamed []*Tensor
	for _, tt := range ts {
		c := *tt
		c.Name = "language_model." + tt.Name
		renamed = append(renamed, &c)
	}
	writeST(t, filepath.Join(dir, SafetensorsFile), renamed...)
	base, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	rep, err := MergeLoRA(base, "testdata/lora/adapter", func(n string) string { return "language_model." + n })
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Merged) != 3 || rep.Merged[0] != "language_model.model.layers.0.mlp.down_proj.weight" {
		t.Errorf("merged %v", rep.Merged)
	}
}

// copyAdapter copies the plain adapter fixture to a temporary directory,
// dropping or replacing files.
func copyAdapter(t *testing.T, edit func(dir string)) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{AdapterConfig, AdapterSafetensors, NonLoRATrainables} {
		b, err := os.ReadFile(filepath.Join("testdata/lora/adapter", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit(dir)
	return dir
}

func TestMergeLoRAErrors(t *testing.T) {
	src, _ := os.ReadFile("testdata/lora/adapter/adapter_model.safetensors")
	adapter, _, err := parseSafetensors("adapter", src)
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(drop string, extra ...*Tensor) func(string) {
		return func(dir string) {
			var ts []*Tensor
			for n, tt := range adapter {
				if n != drop {
					ts = append(ts, tt)
				}
			}
			writeST(t, filepath.Join(dir, AdapterSafetensors), append(ts, extra...)...)
		}
	}
	config := func(body string) func(string) {
		return func(dir string) { os.WriteFile(filepath.Join(dir, AdapterConfig), []byte(body), 0o644) }
	}
	qA := "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
	cases := []struct {
		name string
		edit func(string)
		msg  string
	}{
		{"A without B", rewrite("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"), "q_proj.lora_B.weight missing"},
		{"shape mismatch", rewrite(qA, &Tensor{Name: qA, DType: F32, Shape: []int{4, 5}, Data: make([]byte, 80)}), "do not fit"},
		{"target missing", rewrite("", &Tensor{Name: "base_model.model.model.layers.9.mlp.up_proj.lora_A.weight", DType: F32, Shape: []int{4, 6}, Data: make([]byte, 96)},
			&Tensor{Name: "base_model.model.model.layers.9.mlp.up_proj.lora_B.weight", DType: F32, Shape: []int{10, 4}, Data: make([]byte, 160)}), "model.layers.9.mlp.up_proj.weight: missing in"},
		{"not targeted", rewrite("", &Tensor{Name: "base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight", DType: F32, Shape: []int{4, 6}, Data: make([]byte, 96)}), "not among target_modules"},
		{"stray tensor", rewrite("", u8("base_model.model.lm_head.weight", 1)), "not a LoRA A or B"},
		{"bad rank", config(`{"r":0,"lora_alpha":8,"target_modules":["q_proj"]}`), "must be positive"},
		{"dora", config(`{"r":4,"lora_alpha":8,"target_modules":["q_proj"],"use_dora":true}`), "use_dora"},
		{"no config", func(dir string) { os.Remove(filepath.Join(dir, AdapterConfig)) }, AdapterConfig},
		{"no weights", func(dir string) { os.Remove(filepath.Join(dir, AdapterSafetensors)) }, AdapterBin},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyAdapter(t, c.edit)
			base, err := Open("testdata/lora/base")
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			_, err = MergeLoRA(base, dir, nil)
			if !errors.Is(err, ErrLoRA) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %v, want ErrLoRA containing %q", err, c.msg)
			}
		})
	}
}

func TestLoRATargetRegex(t *testing.T) {
	c := loraConfig{TargetModules: []byte(`".*\\.(q_proj|v_proj)"`)}
	match, err := c.targets()
	if err != nil {
		t.Fatal(err)
	}
	if !match("model.layers.0.self_attn.q_proj") || match("model.layers.0.self_attn.k_proj") || match("q_proj") {
		t.Error("regex target_modules matched wrongly")
	}
}

// BenchmarkMergeOne merges a rank-128 adapter into a 1024×1024 bf16 weight
// (0.27 GFLOP; a 13B layer's q_proj is 25 times that).
func BenchmarkMergeOne(b *testing.B) {
	const n, r = 1024, 128
	vals := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(i%7) * 0.01
		}
		return v
	}
	w, _ := FromFloat32("w", BF16, []int{n, n}, vals(n*n))
	a, _ := FromFloat32("a", BF16, []int{r, n}, vals(r*n))
	bb, _ := FromFloat32("b", BF16, []int{n, r}, vals(n*r))
	b.SetBytes(int64(2 * n * n * r)) // flops, reported as bytes
	for i := 0; i < b.N; i++ {
		if _, err := mergeOne(w, a, bb, r, 2, false); err != nil {
			b.Fatal(err)
		}
	}
}
