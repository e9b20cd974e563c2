package batcher

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/tokenizer"
)

// goldenChain is a chain-*.json file of tools/reference/chain.py: the
// authors' four-stage run in transformers.
type goldenChain struct {
	Checkpoint   string `json:"checkpoint"` // relative to the repository root
	Image        string `json:"image"`      // relative to the repository root
	MaxNewTokens int    `json:"max_new_tokens"`
	Caption      string `json:"caption"`
	Stages       []struct {
		Stage        int     `json:"stage"`
		Prompt       string  `json:"prompt"`
		InputIDs     []int32 `json:"input_ids"`
		GeneratedIDs []int32 `json:"generated_ids"` // EOS kept when generated
		Text         string  `json:"text"`
		Handoff      string  `json:"handoff"` // the list handed to the next stage
	} `json:"stages"`
}

// TestChainGolden runs each reference chain through the real engine and the
// batcher, with chain reuse and speculative decoding on and off: every
// stage's prompt ids, generated ids, text and hand-off, and the caption,
// equal the reference's.
func TestChainGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real model")
	}
	files, _ := filepath.Glob("../testdata/golden/chain-*.json")
	ran := 0
	for _, f := range files {
		var g goldenChain
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if g.Checkpoint == "" {
			continue // chain-forced.json: parser cases only (package chain)
		}
		img, err := os.ReadFile(filepath.Join("..", g.Image))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			m, err := model.Load(context.Background(), filepath.Join("..", g.Checkpoint, "llava"), model.Options{KVBlocks: 512})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			tok := m.Tokenizer().(*tokenizer.Tokenizer)
			var want [][]int32
			for _, s := range g.Stages {
				if got := tokenizer.EncodeImagePrompt(tok, chain.Template(s.Prompt), 1); !slices.Equal(got, s.InputIDs) {
					t.Errorf("stage %d prompt ids:\n got %v\nwant %v", s.Stage, got, s.InputIDs)
				}
				want = append(want, slices.DeleteFunc(slices.Clone(s.GeneratedIDs), func(id int32) bool { return id == tok.EOS() }))
			}
			for _, mode := range []Config{{ChainReuse: true}, {}, {ChainReuse: true, Speculative: true}, {Speculative: true}} {
				reuse := fmt.Sprintf("%v speculative %v", mode.ChainReuse, mode.Speculative)
				b := New(m, mode)
				b.Start()
				n := g.MaxNewTokens
				ch, err := b.SubmitChain(context.Background(), ChainRequest{Image: img, MaxNewTokens: [4]int{n, n, n, n}})
				if err != nil {
					t.Fatal(err)
				}
				o := collect(t, ch)
				if err := b.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
				if o.err != nil {
					t.Fatalf("reuse %v: %v", reuse, o.err)
				}
				if len(o.result.Stages) != len(g.Stages) {
					t.Fatalf("reuse %v: %d stages, want %d", reuse, len(o.result.Stages), len(g.Stages))
				}
				for i, s := range g.Stages {
					got := o.result.Stages[i]
					if !slices.Equal(got.TokenIDs, want[i]) || got.Text != s.Text {
						t.Errorf("reuse %v stage %d:\n got %v %q\nwant %v %q", reuse, s.Stage, got.TokenIDs, got.Text, want[i], s.Text)
					}
				}
				if o.result.Caption != g.Caption {
					t.Errorf("reuse %v caption %q, want %q", reuse, o.result.Caption, g.Caption)
				}
			}
			ran++
		})
	}
	if len(files) > 0 && ran == 0 {
		t.Fatal("no chain golden ran")
	}
}
