package model_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu/membw"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/llava"
	"github.com/pancap-serve/pancap/model/presets"
	"github.com/pancap-serve/pancap/model/weights"
)

// benchModel loads the `bench` preset (DESIGN.md §7, bf16) with a KV cache
// of type kv: the checkpoint in $PANCAP_BENCH_MODEL (a model directory),
// else one generated once into a temporary directory, removed once loaded
// (the mapping outlives the files).
func benchModel(kv kernels.DType) (*llava.Model, error) {
	opts := model.Options{KVBlocks: 1024, KVDType: kv}
	if dir := os.Getenv("PANCAP_BENCH_MODEL"); dir != "" {
		return model.Load(context.Background(), dir, opts)
	}
	root, err := os.MkdirTemp("", "pancap-bench-model")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	if err := presets.Write(root, presets.Bench, weights.BF16, 1); err != nil {
		return nil, err
	}
	return model.Load(context.Background(), presets.ModelDir(root), opts)
}

// BenchmarkBenchPreset measures the whole model on the bench preset: the
// vision encode of one 336 px image, the prefill of an image prompt, and one
// decode step at batch 1, 4, 8 and 16 over 700-token contexts, with a
// float32 KV cache and again (the decode-…-kv-float16 cases) with a float16
// one. Run it with `make bench-model`; it reports tokens per second.
func BenchmarkBenchPreset(b *testing.B) {
	m, err := benchModel(kernels.F32)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	sp := m.Spec()
	img := engine.Image{Pixels: make([]float32, 3*sp.ImageSize*sp.ImageSize)}
	for i := range img.Pixels {
		img.Pixels[i] = float32(i%97)/48 - 1
	}
	b.Run("vision", func(b *testing.B) {
		for b.Loop() {
			f, err := m.EncodeImages([]engine.Image{img})
			if err != nil {
				b.Fatal(err)
			}
			f[0].Wait()
			f[0].Release()
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/image")
	})
	const ctx = 700
	blocksPerSeq := (ctx + 64 + sp.KVBlockSize - 1) / sp.KVBlockSize
	seq := func(i int) []int32 {
		blocks := make([]int32, blocksPerSeq)
		for j := range blocks {
			blocks[j] = int32(i*blocksPerSeq + j)
		}
		return blocks
	}
	prompt := make([]int32, ctx)
	for j := range prompt {
		prompt[j] = int32(100 + j%500)
	}
	b.Run(fmt.Sprintf("prefill-%d", ctx), func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Forward([]engine.Chunk{{Blocks: seq(0), Tokens: prompt, Logits: true}}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(ctx*b.N)/b.Elapsed().Seconds(), "tok/s")
	})
	decode(b, m, seq, prompt, "")
	m16, err := benchModel(kernels.F16)
	if err != nil {
		b.Fatal(err)
	}
	defer m16.Close()
	decode(b, m16, seq, prompt, "-kv-float16")
}

// decode fills 16 sequences' KV with prompt once, then times one decode
// step at batch 1, 4, 8 and 16 (the benchmarks named decode-batch-N+suffix).
// Batch 1 and 16 also report the ratios, each against a yardstick
// measured between their windows of steps (see windows): batch 1 the
// weight bytes a step reads per second over the read bandwidth of a membw
// probe pass (x-read-bw), batch 16 its tokens per second over batch 1's
// (x-batch-1). This host's speed wanders in phases of seconds, which a
// yardstick measured before or after the whole run misses.
func decode(b *testing.B, m *llava.Model, seq func(int) []int32, prompt []int32, suffix string) {
	ctx := len(prompt)
	for i := 0; i < 16; i++ {
		if _, err := m.Forward([]engine.Chunk{{Blocks: seq(i), Tokens: prompt}}); err != nil {
			b.Fatal(err)
		}
	}
	stepper := func(b *testing.B, n int) func() {
		batch := make([]engine.Chunk, n)
		for i := range batch {
			batch[i] = engine.Chunk{Blocks: seq(i), Pos: ctx, Tokens: []int32{7}, Logits: true}
		}
		return func() {
			if _, err := m.Forward(batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, n := range []int{1, 4, 8, 16} {
		b.Run(fmt.Sprintf("decode-batch-%d%s", n, suffix), func(b *testing.B) {
			step := stepper(b, n)
			switch n {
			case 1:
				probe := membw.NewProbe(membw.Bytes)
				bytes := float64(decodeWeightBytes(m))
				steps, ratios := windows(b, step, func() float64 {
					bw := probe.Pass()
					step() // refill the caches the probe evicted
					return bw
				}, func(st, bw float64) float64 { return bytes / st / bw })
				b.ReportMetric(bytes/steps/1e9, "weight-GB/s")
				b.ReportMetric(ratios, "x-read-bw")
			case 16:
				one := stepper(b, 1)
				_, ratios := windows(b, step, func() float64 {
					ts := make([]float64, ratioWindow)
					for i := range ts {
						t := time.Now()
						one()
						ts[i] = time.Since(t).Seconds()
					}
					return median(ts)
				}, func(st, one float64) float64 { return float64(n) / st * one })
				b.ReportMetric(ratios, "x-batch-1")
			default:
				for b.Loop() {
					step()
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// ratioWindow is the number of timed decode steps of a window.
const ratioWindow = 10

// windows runs b.N timed steps in windows of ratioWindow, calling yard
// outside the timer before each window and after the last, and reports the
// median step (median-ms). It returns that median and the median over the
// windows of ratio(the window's median step, the mean of the yardsticks
// before and after it).
func windows(b *testing.B, step func(), yard func() float64, ratio func(st, yard float64) float64) (float64, float64) {
	var steps, yards, ratios []float64
	for i := range b.N {
		if i%ratioWindow == 0 {
			b.StopTimer()
			yards = append(yards, yard())
			b.StartTimer()
		}
		t := time.Now()
		step()
		steps = append(steps, time.Since(t).Seconds())
	}
	b.StopTimer()
	yards = append(yards, yard())
	for w := 0; w*ratioWindow < len(steps); w++ {
		window := slices.Clone(steps[w*ratioWindow : min((w+1)*ratioWindow, len(steps))])
		ratios = append(ratios, ratio(median(window), (yards[w]+yards[w+1])/2))
	}
	st := median(steps)
	b.ReportMetric(st*1e3, "median-ms")
	return st, median(ratios)
}

// decodeWeightBytes is the weight bytes one decode step reads: every
// decoder layer's projections and lm_head (of the embedding table, one row;
// the vision tower and projector, nothing).
func decodeWeightBytes(m *llava.Model) int {
	t := m.Config().Text
	perLayer := 4*t.Hidden*t.Hidden + 3*t.Hidden*t.FFN // q, k, v, o; gate, up, down
	elems := t.Layers*perLayer + t.VocabRows*t.Hidden
	size := 2
	if m.Spec().DType == "float32" {
		size = 4
	}
	return elems * size
}

// median is the median of xs (which it sorts).
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}
