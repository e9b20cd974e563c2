package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// golden is the layout of testdata/llama_golden*.json, written by
// tools/reference/tokenizer_golden.py from transformers' LlamaTokenizer.
type golden struct {
	Model  string `json:"model"` // path from the repository root
	Encode []struct {
		Text string  `json:"text"`
		IDs  []int32 `json:"ids"`
	} `json:"encode"`
	Decode []struct {
		IDs   []int32 `json:"ids"`
		Text  string  `json:"text"`
		Strip string  `json:"strip"`
	} `json:"decode"`
	Image []struct {
		Prompt string  `json:"prompt"`
		IDs    []int32 `json:"ids"`
	} `json:"image"`
}

const presetDir = "../model/presets/tokenizers"

func loadPreset(t testing.TB, name string) *Tokenizer {
	t.Helper()
	tok, err := Load(filepath.Join(presetDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func loadGolden(t *testing.T, file string) golden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGolden(t *testing.T) {
	for _, file := range []string{"llama_golden.json", "llama_golden_bench.json", "llama_golden_ties.json"} {
		t.Run(file, func(t *testing.T) {
			g := loadGolden(t, file)
			tok, err := Load(filepath.Join("..", g.Model))
			if err != nil {
				t.Fatal(err)
			}
			if len(g.Encode) < 1000 && file != "llama_golden_ties.json" {
				t.Errorf("only %d encode cases", len(g.Encode))
			}
			bad := 0
			for _, c := range g.Encode {
				if got := tok.Encode(c.Text, true); !slices.Equal(got, c.IDs) {
					if bad++; bad <= 10 {
						t.Errorf("Encode(%q)\n got %v\nwant %v", c.Text, got, c.IDs)
					}
				}
			}
			for _, c := range g.Decode {
				got := tok.Decode(c.IDs)
				if got != c.Text {
					if bad++; bad <= 20 {
						t.Errorf("Decode(%v) = %q, want %q", c.IDs, got, c.Text)
					}
				}
				if s := Strip(got); s != c.Strip {
					t.Errorf("Strip(%q) = %q, want %q", got, s, c.Strip)
				}
			}
			for _, c := range g.Image {
				if got := EncodeImagePrompt(tok, c.Prompt, 1); !slices.Equal(got, c.IDs) {
					t.Errorf("EncodeImagePrompt(%q)\n got %v\nwant %v", c.Prompt, got, c.IDs)
				}
			}
			if bad > 0 {
				t.Errorf("%d mismatches", bad)
			}
		})
	}
}
