package batcher

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pancap-serve/pancap/engine"
)

// The KV pool `model` sizes for LLaVA-1.5-13B on one 141 GB card (model's
// kvPool is unexported; docs/cuda.md, "Concurrent chains per card", has the
// whole derivation): a block of 16 positions holds keys and values of 40
// layers of width 5120 in float32, and the pool is the smaller of 8 full
// contexts and half the memory left after the fp16 weights (13.35 G
// parameters) and the CUDA context.
const (
	l13Layers, l13Hidden, l13Block, l13Context = 40, 5120, 16, 4096
	card141GB                                  = 141e9
	weights13BFP16                             = 2 * 13.35e9
	cudaContextBytes                           = 1e9
)

// pool13B is that pool's size in blocks for KV elements of elem bytes on a
// card of card bytes.
func pool13B(card float64, elem int) int {
	blockBytes := 2 * l13Layers * l13Block * l13Hidden * elem
	return min(8*l13Context/l13Block, int((card-weights13BFP16-cudaContextBytes)/2/float64(blockBytes)))
}

// TestConcurrentChains13B: in the pool of a 13B model on a 141 GB card
// (2048 blocks), 34 chains with SA-Pancap's stage lengths (576 image tokens;
// 150, 200, 60 and 450 new tokens) are admitted by what their prompts need
// now, so at least 32 of them run in one step, and every chain streams the
// tokens it streams alone. The fake engine's feature width stays small: it
// changes nothing the scheduler sees.
func TestConcurrentChains13B(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 68 chains of 860 tokens")
	}
	blocks := pool13B(card141GB, 4)
	if blocks != 2048 {
		t.Fatalf("the 13B pool on a 141 GB card has %d blocks, the derivation says 2048", blocks)
	}
	spec := engine.Spec{
		Name: "fake-13b", Hidden: 4, VocabSize: 259, ImageTokens: 576, ImageSize: 2, MaxContext: l13Context,
		BOS: fakeBOS, EOS: fakeEOS, KVBlockSize: l13Block, KVBlocks: blocks, DType: "float16", Device: "cuda:0",
	}
	const chains = 34
	reqs := make([]ChainRequest, chains)
	for i := range reqs {
		reqs[i] = ChainRequest{RequestID: fmt.Sprint("c", i), Image: []byte(fmt.Sprint("img:c", i)),
			MaxNewTokens: [4]int{150, 200, 60, 450}, IgnoreEOS: true}
	}
	alone := New(newFakeEngineSpec(spec), Config{ChainReuse: true})
	alone.Start()
	defer alone.Shutdown(context.Background())
	wants := make([][]string, chains)
	for i, r := range reqs {
		wants[i] = runOne(t, alone, r).stages
	}

	eng := newFakeEngineSpec(spec)
	b := New(eng, Config{ChainReuse: true})
	defer b.Shutdown(context.Background())
	var chans []<-chan Event
	for _, r := range reqs { // all queued before the loop starts: one wave
		ch, err := b.SubmitChain(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	b.Start()
	var wg sync.WaitGroup
	for i, ch := range chans {
		wg.Go(func() {
			o := collect(t, ch)
			if o.err != nil || fmt.Sprint(o.stages) != fmt.Sprint(wants[i]) {
				t.Errorf("chain %d: err %v, stages differ from its run alone", i, o.err)
			}
		})
	}
	wg.Wait()
	if n := eng.maxBatch.Load(); n < 32 {
		t.Errorf("at most %d sequences ran in one step, want at least 32", n)
	}
	if st := b.kv.Stats(); st.Used != 0 {
		t.Errorf("%d blocks still used", st.Used)
	}
	t.Logf("%d blocks: at most %d sequences in a step, %v preemptions", blocks, eng.maxBatch.Load(), testutil.ToFloat64(b.m.preemptions))
}
