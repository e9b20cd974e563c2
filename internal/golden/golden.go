// Package golden reads the golden files written by tools/reference from
// Hugging Face transformers and PIL: the cases of testdata/golden for the
// parity tests of the engine on every backend (model, kernels/cuda), and
// the float32 tensors of the image-preprocessing goldens.
package golden

import (
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// Case is one golden case: a checkpoint, an image and a prompt, with what
// the reference computed from them in the case's directory
// (pixel_values.f32, image_features.f32, logits.f32).
type Case struct {
	Dir         string   `json:"-"`          // the case's directory
	Checkpoint  string   `json:"checkpoint"` // relative to the repository root
	DType       string   `json:"dtype"`
	Prompt      string   `json:"prompt"`
	FullPrompt  string   `json:"full_prompt"`
	InputIDs    []int32  `json:"input_ids"`
	GreedyIDs   []int32  `json:"greedy_ids"`
	Layouts     []string `json:"layouts"` // subdirectories of Checkpoint: "hf", "llava"
	LoRA        string   `json:"lora"`    // adapter directory relative to the repository root, or ""
	ImageTokens int      `json:"image_tokens"`
	Vocab       int      `json:"vocab"`
}

// Cases reads every case under root/testdata/golden, skipping t when there
// is none.
func Cases(t testing.TB, root string) []Case {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(root, "testdata", "golden", "*", "case.json"))
	if len(paths) == 0 {
		t.Skipf("no golden cases under %s/testdata/golden (run tools/reference)", root)
	}
	cases := make([]Case, len(paths))
	for i, p := range paths {
		cases[i] = Read(t, filepath.Dir(p))
	}
	return cases
}

// Read reads the case in dir.
func Read(t testing.TB, dir string) Case {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := Case{Dir: dir}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return c
}

// Name is the case's directory name (e.g. "tiny-shapes").
func (c Case) Name() string { return filepath.Base(c.Dir) }

// F32 reads the case's little-endian float32 file name (e.g. "logits.f32").
func (c Case) F32(t testing.TB, name string) []float32 {
	t.Helper()
	return ReadF32(t, filepath.Join(c.Dir, name))
}

// ReadF32 reads a little-endian float32 file, gunzipped when its name ends
// in ".gz".
func ReadF32(t testing.TB, path string) []float32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if filepath.Ext(path) == ".gz" {
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return out
}

// RelL2 is ‖got − want‖ / ‖want‖.
func RelL2(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

// Argmax is the index of v's largest element, the first of equals, as
// torch.argmax.
func Argmax(v []float32) int32 {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return int32(best)
}
