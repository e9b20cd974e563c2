package model_test

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels/cpu"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/llava"
	"github.com/pancap-serve/pancap/tokenizer"
)

// repoRoot is the repository root seen from this package.
const repoRoot = ".."

// goldenCase is the part of a golden case.json the tests read.
type goldenCase struct {
	Checkpoint  string   `json:"checkpoint"`
	DType       string   `json:"dtype"`
	Prompt      string   `json:"prompt"`
	FullPrompt  string   `json:"full_prompt"`
	InputIDs    []int32  `json:"input_ids"`
	GreedyIDs   []int32  `json:"greedy_ids"`
	Layouts     []string `json:"layouts"`
	LoRA        string   `json:"lora"`
	ImageTokens int      `json:"image_tokens"`
	Vocab       int      `json:"vocab"`
}

// goldenCases returns the golden case directories, skipping when none exist.
func goldenCases(t *testing.T) []string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(repoRoot, "testdata", "golden", "*", "case.json"))
	if len(dirs) == 0 {
		t.Skip("no golden cases under testdata/golden (run tools/reference)")
	}
	for i := range dirs {
		dirs[i] = filepath.Dir(dirs[i])
	}
	return dirs
}

func readCase(t *testing.T, dir string) goldenCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c goldenCase
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return c
}

func readF32(t *testing.T, path string) []float32 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return out
}

// relL2 is ‖got − want‖ / ‖want‖.
func relL2(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

func argmax(v []float32) int32 {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return int32(best)
}

// openCase loads one layout of a golden case on a fresh CPU backend.
func openCase(t *testing.T, c goldenCase, layout string) *llava.Model {
	t.Helper()
	opts := model.Options{KVBlocks: 96, KVBlockSize: 8, Backend: cpu.New(0)}
	if c.LoRA != "" {
		opts.LoRA = filepath.Join(repoRoot, c.LoRA)
	}
	m, rep, err := model.Open(filepath.Join(repoRoot, c.Checkpoint, layout), opts)
	if err != nil {
		t.Fatalf("load %s/%s: %v", c.Checkpoint, layout, err)
	}
	t.Cleanup(func() { m.Close() })
	if len(rep.Unused) > 0 {
		t.Errorf("unexpected unused tensors: %v", rep.Unused)
	}
	if rep.DType != c.DType {
		t.Errorf("report dtype %s, want %s", rep.DType, c.DType)
	}
	return m
}

// TestGoldenParity checks every golden case in both layouts against the
// Hugging Face reference: input ids, image features, prompt logits, greedy
// tokens.
func TestGoldenParity(t *testing.T) {
	for _, dir := range goldenCases(t) {
		c := readCase(t, dir)
		for _, layout := range c.Layouts {
			t.Run(filepath.Base(dir)+"/"+layout, func(t *testing.T) {
				if raceEnabled && c.ImageTokens > 64 {
					t.Skip("576-token geometry skipped under -race (slow); the plain run checks it")
				}
				tol := 1e-4
				if c.DType != "float32" {
					tol = 1e-2
				}
				m := openCase(t, c, layout)
				tok := m.Tokenizer().(*tokenizer.Tokenizer)
				if p := chain.Template(c.Prompt); p != c.FullPrompt {
					t.Fatalf("templated prompt %q, want %q", p, c.FullPrompt)
				}
				if ids := tok.EncodeImagePrompt(c.FullPrompt); !slices.Equal(ids, c.InputIDs) {
					t.Fatalf("input ids\n got %v\nwant %v", ids, c.InputIDs)
				}
				feats, err := m.EncodeImages([]engine.Image{{Pixels: readF32(t, filepath.Join(dir, "pixel_values.f32"))}})
				if err != nil {
					t.Fatal(err)
				}
				if e := relL2(feats[0], readF32(t, filepath.Join(dir, "image_features.f32"))); e > tol {
					t.Errorf("image features rel L2 %.3g > %g", e, tol)
				}
				seq := m.NewSequence()
				logits, err := seq.Feed(llava.ExpandImageTokens(c.InputIDs, c.ImageTokens), feats[0], 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(logits) != c.Vocab {
					t.Fatalf("%d logits, want %d", len(logits), c.Vocab)
				}
				e := relL2(logits, readF32(t, filepath.Join(dir, "logits.f32")))
				t.Logf("logits rel L2 %.3g (%s)", e, c.DType)
				if e > tol {
					t.Errorf("logits rel L2 %.3g > %g", e, tol)
				}
				var got []int32
				for range c.GreedyIDs {
					next := argmax(logits)
					got = append(got, next)
					if logits, err = seq.Feed([]int32{next}, nil, 0); err != nil {
						t.Fatal(err)
					}
				}
				if !slices.Equal(got, c.GreedyIDs) {
					t.Errorf("greedy ids\n got %v\nwant %v", got, c.GreedyIDs)
				}
			})
		}
	}
}
