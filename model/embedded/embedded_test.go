package embedded

import (
	"strings"
	"testing"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/llava"
)

func TestOpen(t *testing.T) {
	m, rep, err := Open(model.Options{KVBlocks: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	spec := m.Spec()
	if !spec.RandomWeights || !strings.Contains(spec.Name, "random weights") {
		t.Errorf("spec %+v does not say the weights are random", spec)
	}
	if spec.ImageTokens != 16 || spec.ImageSize != 56 || spec.Hidden != 64 || spec.VocabSize != 1000 {
		t.Errorf("spec %+v is not the tiny preset", spec)
	}
	if len(rep.Unused) != 0 || rep.Layout != model.LayoutLLaVA {
		t.Errorf("report %+v", rep)
	}
	feats, err := m.EncodeImages([]engine.Image{{Pixels: make([]float32, 3*56*56)}})
	if err != nil {
		t.Fatal(err)
	}
	prompt := llava.ExpandImageTokens([]int32{1, engine.ImageToken, 5}, spec.ImageTokens)
	logits, err := m.NewSequence().Feed(prompt, feats[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(logits) != spec.VocabSize {
		t.Fatalf("%d logits, want %d", len(logits), spec.VocabSize)
	}
}
