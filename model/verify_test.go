package model_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/embedded"
	"github.com/pancap-serve/pancap/model/llava"
	"github.com/pancap-serve/pancap/sample"
)

// TestVerifyChunkInvariance is the exactness premise of speculative
// decoding: the logits of every row of a multi-row AllLogits chunk (the
// GEMM path) are bitwise those of one-row decode steps (the GEMV path) fed
// the same tokens, beside other chunks or alone; and after a verification
// whose tail was rejected, decoding over the rejected positions (their KV
// rewritten) gives the logits of the sequence that never saw them. It runs
// on the embedded bf16 model with float32 and float16 KV caches and on the
// tiny fp32 checkpoint.
func TestVerifyChunkInvariance(t *testing.T) {
	type setup struct {
		name string
		open func() (*llava.Model, error)
	}
	setups := []setup{}
	for _, kv := range []kernels.DType{kernels.F32, kernels.F16} {
		setups = append(setups, setup{"synth-kv-" + kv.String(), func() (*llava.Model, error) {
			m, _, err := embedded.Open(context.Background(), model.Options{KVBlocks: 64, KVBlockSize: 8, KVDType: kv, Backend: cpu.New(0)})
			return m, err
		}})
	}
	setups = append(setups, setup{"tiny-fp32", func() (*llava.Model, error) {
		m, _, err := model.Open(context.Background(), filepath.Join(repoRoot, "testdata", "checkpoints", "tiny", "hf"),
			model.Options{KVBlocks: 64, KVBlockSize: 8, Backend: cpu.New(0)})
		return m, err
	}})
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			m, err := su.open()
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			checkVerify(t, m)
		})
	}
}

// checkVerify runs the checks of TestVerifyChunkInvariance on m.
func checkVerify(t *testing.T, m *llava.Model) {
	const steps = 12
	vocab := int32(m.Spec().VocabSize)
	prompt := make([]int32, 37)
	for i := range prompt {
		prompt[i] = 3 + int32(i*7)%(vocab-3)
	}
	blocks := func(first int32) []int32 {
		b := make([]int32, 8)
		for i := range b {
			b[i] = first + int32(i)
		}
		return b
	}
	forward := func(batch ...engine.Chunk) [][]float32 {
		t.Helper()
		out, err := m.Forward(batch)
		if err != nil {
			t.Fatal(err)
		}
		rows := make([][]float32, len(out.Logits))
		for i, r := range out.Logits {
			rows[i] = slices.Clone(r) // the next Forward reuses out
		}
		return rows
	}
	// Sequential greedy decoding on blocks 0…7: inputs[i] is fed at
	// position len(prompt)+i and gives want[i].
	first := forward(engine.Chunk{Blocks: blocks(0), Tokens: prompt, Logits: true})[0]
	inputs := []int32{sample.Argmax(first)}
	var want [][]float32
	for i := range steps {
		row := forward(engine.Chunk{Blocks: blocks(0), Pos: len(prompt) + i, Tokens: inputs[i : i+1], Logits: true})[0]
		want = append(want, row)
		inputs = append(inputs, sample.Argmax(row))
	}
	inputs = inputs[:steps]

	// The same tokens as one verification chunk, beside a prefill and a
	// decode step of another sequence.
	forward(engine.Chunk{Blocks: blocks(8), Tokens: prompt})
	forward(engine.Chunk{Blocks: blocks(16), Tokens: prompt[:20]})
	got := forward(
		engine.Chunk{Blocks: blocks(24), Tokens: prompt[:9], Logits: true},
		engine.Chunk{Blocks: blocks(8), Pos: len(prompt), Tokens: inputs, AllLogits: true},
		engine.Chunk{Blocks: blocks(16), Pos: 20, Tokens: prompt[20:21], Logits: true},
	)
	if len(got) != 1+steps+1 {
		t.Fatalf("%d logit rows, want %d", len(got), steps+2)
	}
	for i := range steps {
		if !slices.Equal(got[1+i], want[i]) {
			t.Errorf("verification row %d differs from the decode step at its position", i)
		}
	}
	last := slices.Clone(got[1+steps])

	// The same chunks again, the verification and the decode step asking
	// for greedy picks: their ids are the rows' sample.Argmax, the other
	// chunk's row comes back as logits.
	out, err := m.Forward([]engine.Chunk{
		{Blocks: blocks(24), Tokens: prompt[:9], Logits: true},
		{Blocks: blocks(8), Pos: len(prompt), Tokens: inputs, AllLogits: true, Greedy: true},
		{Blocks: blocks(16), Pos: 20, Tokens: prompt[20:21], Logits: true, Greedy: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := []int32{}
	for _, row := range append(want[:steps:steps], last) {
		wantIDs = append(wantIDs, sample.Argmax(row))
	}
	if len(out.Logits) != 1 || !slices.Equal(out.Logits[0], got[0]) || !slices.Equal(out.Tokens, wantIDs) {
		t.Errorf("greedy picks: %d logit rows (first equal: %v), ids %v, want 1 row and ids %v",
			len(out.Logits), len(out.Logits) > 0 && slices.Equal(out.Logits[0], got[0]), out.Tokens, wantIDs)
	}

	// A verification of 4 tokens whose last 2 are wrong, then decoding from
	// the first wrong position on: the rejected KV is overwritten.
	forward(engine.Chunk{Blocks: blocks(32), Tokens: prompt})
	drafted := []int32{inputs[0], inputs[1], (inputs[2] + 1) % vocab, (inputs[3] + 5) % vocab}
	got = forward(engine.Chunk{Blocks: blocks(32), Pos: len(prompt), Tokens: drafted, AllLogits: true})
	for i := range 2 {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("accepted row %d of a partly rejected verification differs", i)
		}
	}
	for i := 2; i < steps; i++ {
		row := forward(engine.Chunk{Blocks: blocks(32), Pos: len(prompt) + i, Tokens: inputs[i : i+1], Logits: true})[0]
		if !slices.Equal(row, want[i]) {
			t.Errorf("decode step %d after the rollback differs from the sequence without drafts", i)
		}
	}
}
