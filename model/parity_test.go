package model_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/internal/golden"
	"github.com/pancap-serve/pancap/kernels/cpu"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/llava"
	"github.com/pancap-serve/pancap/tokenizer"
)

// repoRoot is the repository root seen from this package.
const repoRoot = ".."

// openCase loads one layout of a golden case on a fresh CPU backend.
func openCase(t *testing.T, c golden.Case, layout string) *llava.Model {
	t.Helper()
	opts := model.Options{KVBlocks: 96, KVBlockSize: 8, Backend: cpu.New(0)}
	if c.LoRA != "" {
		opts.LoRA = filepath.Join(repoRoot, c.LoRA)
	}
	m, rep, err := model.Open(context.Background(), filepath.Join(repoRoot, c.Checkpoint, layout), opts)
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
	for _, c := range golden.Cases(t, repoRoot) {
		for _, layout := range c.Layouts {
			t.Run(c.Name()+"/"+layout, func(t *testing.T) {
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
				if ids := tokenizer.EncodeImagePrompt(tok, c.FullPrompt, 1); !slices.Equal(ids, c.InputIDs) {
					t.Fatalf("input ids\n got %v\nwant %v", ids, c.InputIDs)
				}
				feats, err := m.EncodeImages([]engine.Image{{Pixels: c.F32(t, "pixel_values.f32")}})
				if err != nil {
					t.Fatal(err)
				}
				if e := golden.RelL2(m.ReadFeatures(feats[0]), c.F32(t, "image_features.f32")); e > tol {
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
				e := golden.RelL2(logits, c.F32(t, "logits.f32"))
				t.Logf("logits rel L2 %.3g (%s)", e, c.DType)
				if e > tol {
					t.Errorf("logits rel L2 %.3g > %g", e, tol)
				}
				var got []int32
				for range c.GreedyIDs {
					next := golden.Argmax(logits)
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
