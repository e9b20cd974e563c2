package embedded

import (
	"context"
	"testing"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/llava"
)

func TestOpen(t *testing.T) {
	m, rep, err := Open(context.Background(), model.Options{KVBlocks: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	spec := m.Spec()
	if spec.RandomWeights || spec.Name != Name {
		t.Errorf("spec %+v: want the trained %q model", spec, Name)
	}
	if spec.ImageTokens != 64 || spec.ImageSize != 128 || spec.Hidden != 256 || spec.VocabSize != 1000 {
		t.Errorf("spec %+v is not the training geometry of training/train.py", spec)
	}
	if len(rep.Unused) != 0 || rep.Layout != model.LayoutLLaVA {
		t.Errorf("report %+v", rep)
	}
	feats, err := m.EncodeImages([]engine.Image{{Pixels: make([]float32, 3*128*128)}})
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

// BenchmarkDecodeStep is one decode step of 8 sequences at position 100 on
// the embedded model.
func BenchmarkDecodeStep(b *testing.B) {
	m, _, err := Open(context.Background(), model.Options{KVBlocks: 8 * 8, KVBlockSize: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	batch := make([]engine.Chunk, 8)
	for i := range batch {
		blocks := make([]int32, 8)
		for j := range blocks {
			blocks[j] = int32(i*8 + j)
		}
		batch[i] = engine.Chunk{Blocks: blocks, Pos: 100, Tokens: []int32{int32(10 + i)}, Logits: true}
	}
	b.ResetTimer()
	for range b.N {
		if _, err := m.Forward(batch); err != nil {
			b.Fatal(err)
		}
	}
}
