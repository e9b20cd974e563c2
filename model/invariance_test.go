package model_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/internal/golden"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/llava"
	"github.com/pancap-serve/pancap/sample"
)

// tinyCase is the golden case of the tiny fp32 model on shapes.png; the
// test skips when it is absent.
func tinyCase(t *testing.T) golden.Case {
	t.Helper()
	dir := filepath.Join(repoRoot, "testdata", "golden", "tiny-shapes")
	if _, err := os.Stat(filepath.Join(dir, "case.json")); err != nil {
		t.Skip("golden case tiny-shapes absent (run tools/reference)")
	}
	return golden.Read(t, dir)
}

// TestPrefillInvariance checks that the prompt logits are bitwise the same
// whether the prompt is prefilled at once, in chunks of several sizes, or
// in a batch beside other sequences.
func TestPrefillInvariance(t *testing.T) {
	c := tinyCase(t)
	m := openCase(t, c, "hf")
	feats, err := m.EncodeImages([]engine.Image{{Pixels: c.F32(t, "pixel_values.f32")}})
	if err != nil {
		t.Fatal(err)
	}
	prompt := llava.ExpandImageTokens(c.InputIDs, c.ImageTokens)
	want, err := m.NewSequence().Feed(prompt, feats[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 5, 16, 17} {
		got, err := m.NewSequence().Feed(prompt, feats[0], chunk)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("prefill in chunks of %d: logits differ from one-shot prefill", chunk)
		}
	}

	// The prompt as the second chunk of a batch, beside a text prefill and a
	// decode step of other sequences on other blocks.
	blocks := func(first, n int32) []int32 {
		var b []int32
		for i := range n {
			b = append(b, first+i)
		}
		return b
	}
	other := []int32{1, 300, 301, 302, 303, 304, 305}
	if _, err := m.Forward([]engine.Chunk{{Blocks: blocks(20, 4), Pos: 0, Tokens: other}}); err != nil {
		t.Fatal(err)
	}
	out, err := m.Forward([]engine.Chunk{
		{Blocks: blocks(10, 8), Pos: 0, Tokens: other[:5], Logits: true},
		{Blocks: blocks(0, 10), Pos: 0, Tokens: prompt, Image: feats[0], Logits: true},
		{Blocks: blocks(20, 4), Pos: len(other), Tokens: []int32{7}, Logits: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Logits) != 3 {
		t.Fatalf("%d logit rows, want 3", len(out.Logits))
	}
	if !slices.Equal(out.Logits[1], want) {
		t.Error("prompt logits in a batch differ from the prompt alone")
	}
	inBatch := slices.Clone(out.Logits[0]) // the next Forward reuses out
	alone, err := m.Forward([]engine.Chunk{{Blocks: blocks(10, 8), Pos: 0, Tokens: other[:5], Logits: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(inBatch, alone.Logits[0]) {
		t.Error("a text prefill's logits depend on its batch")
	}
}

// TestForwardRejectsBadChunks checks the engine's input validation.
func TestForwardRejectsBadChunks(t *testing.T) {
	c := tinyCase(t)
	m := openCase(t, c, "llava")
	for name, ch := range map[string]engine.Chunk{
		"no blocks":          {Pos: 0, Tokens: []int32{1, 2}},
		"block out of pool":  {Blocks: []int32{1 << 20}, Tokens: []int32{1}},
		"token out of vocab": {Blocks: []int32{0}, Tokens: []int32{5000}},
		"image without rows": {Blocks: []int32{0}, Tokens: []int32{1, engine.ImageToken}},
		"past max context":   {Blocks: []int32{0}, Pos: 1 << 20, Tokens: []int32{1}},
		"sample without logits": {Blocks: []int32{0}, Tokens: []int32{1},
			Sample: &engine.Sampling{Temperature: 1, U: 0.5}},
		"sample of all logits": {Blocks: []int32{0}, Tokens: []int32{1}, AllLogits: true,
			Sample: &engine.Sampling{Temperature: 1, U: 0.5}},
		"sample and greedy": {Blocks: []int32{0}, Tokens: []int32{1}, Logits: true, Greedy: true,
			Sample: &engine.Sampling{Temperature: 1, U: 0.5}},
		"sample at temperature 0": {Blocks: []int32{0}, Tokens: []int32{1}, Logits: true,
			Sample: &engine.Sampling{U: 0.5}},
		"sample's top-p above 1": {Blocks: []int32{0}, Tokens: []int32{1}, Logits: true,
			Sample: &engine.Sampling{Temperature: 1, TopP: 2, U: 0.5}},
		"sample's number 1": {Blocks: []int32{0}, Tokens: []int32{1}, Logits: true,
			Sample: &engine.Sampling{Temperature: 1, U: 1}},
		"sample's number NaN": {Blocks: []int32{0}, Tokens: []int32{1}, Logits: true,
			Sample: &engine.Sampling{Temperature: 1, U: math.NaN()}},
	} {
		if _, err := m.Forward([]engine.Chunk{ch}); err == nil {
			t.Errorf("%s: Forward accepted the chunk", name)
		}
	}
	if _, err := m.EncodeImages([]engine.Image{{Pixels: make([]float32, 10)}}); err == nil {
		t.Error("EncodeImages accepted a wrong-sized image")
	}
}

// TestSamplePicks: a Sample chunk's token is sample.Picker's pick of the
// logits the same chunk returns without Sample (the CPU backend picks on
// the host), and Output.Tokens holds the picked chunks' ids in batch order
// (Greedy and Sample alike) while Logits holds the other rows.
func TestSamplePicks(t *testing.T) {
	c := tinyCase(t)
	m := openCase(t, c, "llava")
	batch := []engine.Chunk{
		{Blocks: []int32{0}, Tokens: []int32{1, 5, 9}, Logits: true},
		{Blocks: []int32{1}, Tokens: []int32{1, 7}, Logits: true},
		{Blocks: []int32{2}, Tokens: []int32{1, 2, 3}, Logits: true},
	}
	out, err := m.Forward(batch)
	if err != nil {
		t.Fatal(err)
	}
	rows := [][]float32{slices.Clone(out.Logits[0]), slices.Clone(out.Logits[1]), slices.Clone(out.Logits[2])}
	s := engine.Sampling{Temperature: 1.5, TopK: 30, TopP: 0.9, U: 0.62}
	batch[0].Sample, batch[2].Greedy = &s, true
	if out, err = m.Forward(batch); err != nil {
		t.Fatal(err)
	}
	var picker sample.Picker
	want := []int32{picker.Pick(rows[0], sample.Params{Temperature: s.Temperature, TopK: s.TopK, TopP: s.TopP}, s.U), sample.Argmax(rows[2])}
	if !slices.Equal(out.Tokens, want) || len(out.Logits) != 1 || !slices.Equal(out.Logits[0], rows[1]) {
		t.Errorf("tokens %v, want %v; %d logit rows, want the middle chunk's", out.Tokens, want, len(out.Logits))
	}
}

// TestEncodeImagesBatchInvariance checks that an image's features do not
// depend on the other images of the batch.
func TestEncodeImagesBatchInvariance(t *testing.T) {
	c := tinyCase(t)
	m := openCase(t, c, "llava")
	px := c.F32(t, "pixel_values.f32")
	other := make([]float32, len(px))
	for i := range other {
		other[i] = float32(i%17)/8 - 1
	}
	alone, err := m.EncodeImages([]engine.Image{{Pixels: px}})
	if err != nil {
		t.Fatal(err)
	}
	both, err := m.EncodeImages([]engine.Image{{Pixels: other}, {Pixels: px}})
	if err != nil {
		t.Fatal(err)
	}
	a, b0, b1 := m.ReadFeatures(alone[0]), m.ReadFeatures(both[0]), m.ReadFeatures(both[1])
	if !slices.Equal(b1, a) {
		t.Error("image features depend on the batch")
	}
	if slices.Equal(b0, b1) {
		t.Error("two different images gave the same features")
	}
}

// TestDecodeStepAllocations checks that a decode step allocates only the
// logits it returns.
func TestDecodeStepAllocations(t *testing.T) {
	c := tinyCase(t)
	m := openCase(t, c, "hf")
	seq := m.NewSequence()
	if _, err := seq.Feed([]int32{1, 300, 301, 302}, nil, 0); err != nil {
		t.Fatal(err)
	}
	batch := []engine.Chunk{{Blocks: []int32{0, 1, 2, 3}, Pos: 4, Tokens: []int32{7}, Logits: true}}
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := m.Forward(batch); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("a decode step allocates %v times, want none (its logits reuse the last step's)", allocs)
	}
}

// TestHalfKVCache checks the 16-bit KV caches against the reference: the
// tiny fp32 case's prompt logits within bf16's and fp16's rounding of the
// keys and values, and the model's Spec naming the cache type.
func TestHalfKVCache(t *testing.T) {
	c := tinyCase(t)
	for _, kc := range []struct {
		dt  kernels.DType
		tol float64
	}{{kernels.BF16, 2e-2}, {kernels.F16, 3e-3}} {
		m, _, err := model.Open(context.Background(), filepath.Join(repoRoot, c.Checkpoint, "hf"),
			model.Options{KVBlocks: 96, KVBlockSize: 8, KVDType: kc.dt, Backend: cpu.New(0)})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if got := m.Spec().KVDType; got != kc.dt.String() {
			t.Errorf("Spec().KVDType = %q, want %q", got, kc.dt)
		}
		feats, err := m.EncodeImages([]engine.Image{{Pixels: c.F32(t, "pixel_values.f32")}})
		if err != nil {
			t.Fatal(err)
		}
		logits, err := m.NewSequence().Feed(llava.ExpandImageTokens(c.InputIDs, c.ImageTokens), feats[0], 0)
		if err != nil {
			t.Fatal(err)
		}
		e := golden.RelL2(logits, c.F32(t, "logits.f32"))
		t.Logf("%s KV cache: logits rel L2 %.3g", kc.dt, e)
		if e > kc.tol || e == 0 {
			t.Errorf("%s KV cache: logits rel L2 %.3g, want in (0, %g]", kc.dt, e, kc.tol)
		}
	}
}
