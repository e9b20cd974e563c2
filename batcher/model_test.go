package batcher_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/model"
)

// drawPNG draws a w×h test image whose colours depend on seed.
func drawPNG(t *testing.T, w, h int, seed uint64) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(seed, 1))
	r0, g0 := uint8(rng.IntN(256)), uint8(rng.IntN(256))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{r0 + uint8(x*3), g0 + uint8(y*5), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// meanBatch returns the mean of the pancap_batch_size histogram.
func meanBatch(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "pancap_batch_size" {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleSum() / float64(h.GetSampleCount())
		}
	}
	t.Fatal("no pancap_batch_size")
	return 0
}

// chainTexts runs reqs through b, all at once or one at a time, and returns
// each request's stage texts and ids.
func chainTexts(t *testing.T, b *batcher.Batcher, reqs []batcher.ChainRequest, concurrent bool) []string {
	t.Helper()
	out := make([]string, len(reqs))
	var wg sync.WaitGroup
	run := func(i int, ch <-chan batcher.Event) {
		for ev := range ch {
			if ev.Kind != batcher.EventDone {
				continue
			}
			if ev.Err != nil {
				t.Errorf("request %d: %v", i, ev.Err)
				continue
			}
			for _, s := range ev.Result.Stages {
				out[i] += fmt.Sprintf("%d:%q:%v ", s.Stage, s.Text, s.TokenIDs)
			}
		}
	}
	for _, i := range rand.Perm(len(reqs)) {
		ch, err := b.SubmitChain(context.Background(), reqs[i])
		if err != nil {
			t.Fatal(err)
		}
		if concurrent {
			wg.Go(func() { run(i, ch) })
		} else {
			run(i, ch)
		}
	}
	wg.Wait()
	return out
}

// TestTinyModelBatchInvariance runs 16 chains of the tiny preset (fp32 and
// bf16 weights, random; bf16 weights with an fp16 KV cache) concurrently
// and one at a time, in reuse and baseline mode: every stage's greedy
// tokens must be the same.
func TestTinyModelBatchInvariance(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("runs a model: too slow for -short and -race (TestConcurrentMatchesSequential covers the scheduling under -race)")
	}
	open := map[string]func() (engine.Engine, error){
		"fp32": func() (engine.Engine, error) {
			m, _, err := model.Open(context.Background(), "../testdata/checkpoints/tiny/llava", model.Options{KVBlocks: 2048})
			return m, err
		},
		"bf16": func() (engine.Engine, error) {
			m, _, err := model.Open(context.Background(), "../testdata/checkpoints/tiny-bf16/llava", model.Options{KVBlocks: 2048})
			return m, err
		},
		"bf16, fp16 KV cache": func() (engine.Engine, error) {
			m, _, err := model.Open(context.Background(), "../testdata/checkpoints/tiny-bf16/llava", model.Options{KVBlocks: 2048, KVDType: kernels.F16})
			return m, err
		},
	}
	var reqs []batcher.ChainRequest
	for i := range 16 {
		reqs = append(reqs, batcher.ChainRequest{
			Image:        drawPNG(t, 40+i%5*7, 30+i%3*11, uint64(i%12)),
			MaxNewTokens: [4]int{12, 12, 8, 16},
			IgnoreEOS:    i%2 == 0,
		})
	}
	for name, load := range open {
		eng, err := load()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		defer eng.(io.Closer).Close()
		ref := batcher.New(eng, batcher.Config{ChainReuse: true})
		ref.Start()
		want := chainTexts(t, ref, reqs, false)
		for i, w := range want {
			if len(w) < 40 {
				t.Fatalf("%s request %d: output %q", name, i, w)
			}
		}
		if err := ref.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, reuse := range []bool{true, false} {
			reg := prometheus.NewRegistry()
			b := batcher.New(eng, batcher.Config{ChainReuse: reuse, MaxBatchTokens: 96, MaxEncodeBatch: 4, Metrics: reg})
			b.Start()
			got := chainTexts(t, b, reqs, true)
			if err := b.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if mean := meanBatch(t, reg); mean < 2 {
				t.Errorf("%s reuse %v: %.2f sequences per step, the chains did not batch", name, reuse, mean)
			}
			for i := range reqs {
				if got[i] != want[i] {
					t.Errorf("%s reuse %v request %d:\n got %s\nwant %s", name, reuse, i, got[i], want[i])
				}
			}
			if st := b.KVStats(); st.Used != 0 {
				t.Errorf("%s: %d KV blocks still used", name, st.Used)
			}
		}
	}
}
