package batcher

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pancap-serve/pancap/chain"
	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/sample"
	"github.com/pancap-serve/pancap/tokenizer"
)

func nan() float64 { return math.NaN() }

func genReq(prompt string, image string) GenerateRequest {
	r := GenerateRequest{RequestID: prompt, Prompt: prompt, MaxNewTokens: 40, IgnoreEOS: true}
	if image != "" {
		r.Image = []byte(image)
	}
	return r
}

// runGen runs one generation and returns its outcome.
func runGen(t *testing.T, b *Batcher, r GenerateRequest) outcome {
	t.Helper()
	ch, err := b.SubmitGenerate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	o := collect(t, ch)
	if o.err != nil {
		t.Fatalf("%s: %v", r.RequestID, o.err)
	}
	return o
}

func TestGenerate(t *testing.T) {
	b, eng := newTest(t, 1024, Config{ChainReuse: true})
	text := runGen(t, b, genReq("Tell me a story.", ""))
	img := runGen(t, b, genReq("Tell me a story.", "pic"))
	if eng.imagesEncoded.Load() != 1 {
		t.Errorf("%d images encoded, want 1", eng.imagesEncoded.Load())
	}
	for _, o := range []outcome{text, img} {
		s := o.result.Stages
		if len(s) != 1 || s[0].Stage != 0 || s[0].Usage.GeneratedTokens != 40 || s[0].Finish != "length" {
			t.Fatalf("result %+v", o.result)
		}
	}
	if text.result.Stages[0].Text == img.result.Stages[0].Text {
		t.Error("the image did not change the output")
	}
	// Raw prompts go in as given.
	raw := GenerateRequest{Prompt: "USER: <image>\nHi ASSISTANT:", Raw: true, Image: []byte("pic"), MaxNewTokens: 5}
	o := runGen(t, b, raw)
	if got := o.result.Stages[0].Usage.PromptTokens; got != len("USER: ")+1+6+len("\nHi ASSISTANT:") {
		t.Errorf("raw prompt has %d tokens", got)
	}
}

func TestStopStrings(t *testing.T) {
	b, _ := newTest(t, 1024, Config{ChainReuse: true})
	r := genReq("Say something long.", "")
	r.MaxNewTokens = 80
	full := runGen(t, b, r).result.Stages[0]
	runes := []rune(full.Text)
	stop := string(runes[len(runes)/2 : len(runes)/2+2])
	r.Stop = []string{stop, "never appears"}
	got := runGen(t, b, r)
	s := got.result.Stages[0]
	want := strings.TrimRight(full.Text[:strings.Index(full.Text, stop)], " \n")
	if s.Finish != "stop" || s.Text != want {
		t.Fatalf("stop %q: finish %s text %q, want %q", stop, s.Finish, s.Text, want)
	}
	if got.deltas[0] != want {
		t.Fatalf("streamed %q", got.deltas[0])
	}
}

// TestPreemption: admission takes requests by the blocks their prompts
// need now, so short prompts with long outputs oversubscribe a small pool;
// sequences are then preempted, newest first, and recomputed: every request
// completes, outputs do not change, and the oldest request is never
// preempted. A request alone whose worst case is the whole pool finishes; one
// larger is refused.
func TestPreemption(t *testing.T) {
	const blocks = 64 // of 4 positions
	for _, reuse := range []bool{true, false} {
		ref, _ := newTest(t, 1024, Config{ChainReuse: reuse})
		b, eng := newTest(t, blocks, Config{ChainReuse: reuse, MaxBatchTokens: 64})
		var reqs []GenerateRequest
		var wants [][]string
		for i := range 6 {
			// 9 prompt and 150 new tokens: 40 of the 64 blocks alone, 4 at
			// admission.
			r := genReq(fmt.Sprintf("R%d %s", i, chain.ImagePlaceholder), fmt.Sprint("im", i%2))
			r.Raw, r.MaxNewTokens = true, 150
			reqs = append(reqs, r)
			wants = append(wants, runGen(t, ref, r).stages)
		}
		var wg sync.WaitGroup
		for i, r := range reqs {
			want := wants[i]
			ch, err := b.SubmitGenerate(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				o := collect(t, ch)
				if o.err != nil || fmt.Sprint(o.stages) != fmt.Sprint(want) {
					t.Errorf("reuse %v request %d: err %v\n got %v\nwant %v", reuse, i, o.err, o.stages, want)
				}
			})
		}
		wg.Wait()
		if testutil.ToFloat64(b.m.preemptions) == 0 {
			t.Errorf("reuse %v: no preemption happened", reuse)
		}
		if st := b.kv.Stats(); st.Used != 0 {
			t.Errorf("reuse %v: %d blocks still used", reuse, st.Used)
		}
		if !reuse { // without the prefix cache, every recomputation starts at position 0
			starts := func(r GenerateRequest) int {
				ids := tokenizer.EncodeImagePrompt(fakeTokenizer{}, r.Prompt, eng.spec.ImageTokens)
				return eng.starts[fmt.Sprint(ids[:8])]
			}
			if n := starts(reqs[0]); n != 1 {
				t.Errorf("the oldest request was computed %d times, want once", n)
			}
			// Only the oldest may preempt the second; any may preempt the newest.
			if second, newest := starts(reqs[1]), starts(reqs[len(reqs)-1]); second >= newest {
				t.Errorf("the second request was computed %d times, the newest %d: want the newest preempted first", second, newest)
			}
		}

		// Alone, a request whose prompt and limit fill the pool finishes;
		// one token more is refused at submission.
		full := genReq(fmt.Sprintf("R9 %s", chain.ImagePlaceholder), "im9")
		full.Raw, full.MaxNewTokens = true, blocks*4-len(tokenizer.EncodeImagePrompt(fakeTokenizer{}, full.Prompt, eng.spec.ImageTokens))
		if o := runGen(t, b, full); len(o.result.Stages[0].TokenIDs) != full.MaxNewTokens {
			t.Errorf("reuse %v: the request filling the pool generated %d tokens, want %d", reuse, len(o.result.Stages[0].TokenIDs), full.MaxNewTokens)
		}
		full.MaxNewTokens++
		if _, err := b.SubmitGenerate(context.Background(), full); !errors.Is(err, ErrPromptTooLong) {
			t.Errorf("reuse %v: a request one token over the pool: %v, want ErrPromptTooLong", reuse, err)
		}
	}
}

// TestDeadline: a deadline ends the request with the context's error within
// one step and frees its blocks.
func TestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		eng := newFakeEngine(1024)
		eng.delay = time.Millisecond
		b := New(eng, Config{ChainReuse: true})
		b.Start()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		r := chainReq("slow")
		r.IgnoreEOS, r.MaxNewTokens = true, [4]int{500, 500, 500, 500}
		start := time.Now()
		ch, err := b.SubmitChain(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		o := collect(t, ch)
		if !errors.Is(o.err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want the deadline", o.err)
		}
		if took := time.Since(start); took > 52*time.Millisecond {
			t.Errorf("ended %v after submission, deadline was 50ms", took)
		}
		synctest.Wait()
		if st := b.kv.Stats(); st.Used != 0 {
			t.Errorf("%d blocks still used", st.Used)
		}
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(newFakeEngine(64), Config{})
		if b.Ready() {
			t.Fatal("ready before Start")
		}
		b.Start()
		synctest.Wait()
		if !b.Ready() {
			t.Fatal("not ready after Start")
		}
		if err := b.Shutdown(context.Background()); err != nil || b.Ready() {
			t.Fatalf("shutdown: %v, ready %v", err, b.Ready())
		}
	})
}

func TestValidation(t *testing.T) {
	b := New(newFakeEngine(1024), Config{})
	small := New(newFakeEngine(8), Config{})
	chainCases := []struct {
		name  string
		b     *Batcher
		edit  func(*ChainRequest)
		want  error
		field string
	}{
		{"stages", b, func(r *ChainRequest) { r.Stages = 5 }, ErrInvalidRequest, "stages: must be in [0, 4] (0 means all), got 5"},
		{"negative stages", b, func(r *ChainRequest) { r.Stages = -1 }, ErrInvalidRequest, "stages:"},
		{"max new", b, func(r *ChainRequest) { r.MaxNewTokens[2] = -1 }, ErrInvalidRequest, "max_new_tokens[2]: must be in [0, 4096]"},
		{"max new big", b, func(r *ChainRequest) { r.MaxNewTokens[0] = 5000 }, ErrInvalidRequest, "max_new_tokens[0]"},
		{"temperature", b, func(r *ChainRequest) { r.Sampling.Temperature = float32(nan()) }, ErrInvalidRequest, "sampling.temperature"},
		{"top_p", b, func(r *ChainRequest) { r.Sampling.TopP = 1.5 }, ErrInvalidRequest, "sampling.top_p"},
		{"top_k", b, func(r *ChainRequest) { r.Sampling.TopK = -1 }, ErrInvalidRequest, "sampling.top_k"},
		{"stops", b, func(r *ChainRequest) { r.Stop = make([]string, 17) }, ErrInvalidRequest, "stop: at most 16"},
		{"empty stop", b, func(r *ChainRequest) { r.Stop = []string{"x", ""} }, ErrInvalidRequest, "stop[1]"},
		{"invalid stop", b, func(r *ChainRequest) { r.Stop = []string{"\xff"} }, ErrInvalidRequest, "stop[0]: must be 1 to 256 bytes of UTF-8"},
		{"no image", b, func(r *ChainRequest) { r.Image = nil }, ErrInvalidRequest, "image: required"},
		{"bad image", b, func(r *ChainRequest) { r.Image = []byte("bad bytes") }, ErrInvalidImage, "unsupported format"},
		{"context", b, func(r *ChainRequest) { r.MaxNewTokens[0] = 1000 }, ErrPromptTooLong, "stage 1"},
		{"pool", small, func(r *ChainRequest) {}, ErrPromptTooLong, "pool holds 8"},
	}
	for _, c := range chainCases {
		r := chainReq("v")
		c.edit(&r)
		_, err := c.b.SubmitChain(context.Background(), r)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want %v naming %q", c.name, err, c.want, c.field)
		}
	}
	queued, err := b.SubmitChain(context.Background(), ChainRequest{Image: []byte("x"), Sampling: sample.Params{TopP: 1}})
	if err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	genCases := []struct {
		name  string
		r     GenerateRequest
		want  error
		field string
	}{
		{"empty", GenerateRequest{Prompt: "  "}, ErrInvalidRequest, "prompt: must not be empty"},
		{"placeholder", GenerateRequest{Prompt: "a <image> b"}, ErrInvalidRequest, "prompt: must not contain"},
		{"raw no image", GenerateRequest{Prompt: "a <image>", Raw: true}, ErrInvalidRequest, "no image was given"},
		{"raw twice", GenerateRequest{Prompt: "<image><image>", Raw: true, Image: []byte("i")}, ErrInvalidRequest, "exactly once"},
		{"tokens", GenerateRequest{Prompt: "hi", MaxNewTokens: 2000}, ErrInvalidRequest, "max_new_tokens: must be at most the model's context, 1024 tokens"},
		{"too long", GenerateRequest{Prompt: strings.Repeat("x", 900), MaxNewTokens: 100}, ErrPromptTooLong, "context holds 1024"},
		{"bad image", GenerateRequest{Prompt: "hi", Image: []byte("bad")}, ErrInvalidImage, "image:"},
	}
	for _, c := range genCases {
		_, err := b.SubmitGenerate(context.Background(), c.r)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want %v naming %q", c.name, err, c.want, c.field)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.SubmitChain(ctx, chainReq("c")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if o := collect(t, queued); !errors.Is(o.err, ErrNotServing) {
		t.Errorf("queued request at shutdown: %v", o.err)
	}
	if err := small.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// FuzzValidate feeds arbitrary request fields to validation: every refusal
// wraps a sentinel, and every accepted request fits the context and pool.
func FuzzValidate(f *testing.F) {
	f.Add(4, 24, 0, -1, 5000, float32(0.7), float32(0.9), 5, "stop", "describe", []byte("img"), false)
	f.Add(0, 0, 0, 0, 0, float32(0), float32(0), 0, "", "", []byte{}, true)
	f.Add(9, 1, 1, 1, 1, float32(-1), float32(2), -3, "<image>", "<image> hi", []byte("bad"), true)
	b := New(newFakeEngine(512), Config{})
	f.Fuzz(func(t *testing.T, stages, m0, m1, m2, m3 int, temp, topP float32, topK int, stop, prompt string, img []byte, raw bool) {
		params := sample.Params{Temperature: temp, TopP: topP, TopK: topK}
		var stops []string
		if stop != "" {
			stops = []string{stop}
		}
		sentinels := []error{ErrInvalidRequest, ErrInvalidImage, ErrPromptTooLong}
		check := func(req *request, err error) {
			if err != nil {
				for _, s := range sentinels {
					if errors.Is(err, s) {
						return
					}
				}
				t.Fatalf("error %v wraps no sentinel", err)
			}
			if req.need > b.kv.NumBlocks() || req.need < 1 {
				t.Fatalf("accepted request needs %d blocks", req.need)
			}
			for _, m := range req.maxNew[:max(1, int(req.stages))] {
				if m < 1 || m > b.spec.MaxContext {
					t.Fatalf("accepted max_new_tokens %d", m)
				}
			}
		}
		check(b.newChainRequest(ChainRequest{Stages: stages, MaxNewTokens: [4]int{m0, m1, m2, m3},
			Sampling: params, Stop: stops, Image: img}))
		check(b.newGenerateRequest(GenerateRequest{Prompt: prompt, Raw: raw, Image: img, MaxNewTokens: m0,
			Sampling: params, Stop: stops}))
	})
}

// TestReuseCutsLaterStageLatency: with a fixed cost per forward step, the
// first token of stages 2–4 comes sooner with reuse (shared prefix, no
// re-encode) than in the baseline, and timings are consistent.
func TestReuseCutsLaterStageLatency(t *testing.T) {
	ttft := func(reuse bool) [4]time.Duration {
		var out [4]time.Duration
		synctest.Test(t, func(t *testing.T) {
			eng := newFakeEngine(1024)
			eng.delay = time.Millisecond
			b := New(eng, Config{ChainReuse: reuse, MaxBatchTokens: 32})
			b.Start()
			o := runOne(t, b, chainReq("timed"))
			for i, s := range o.result.Stages {
				out[i] = s.Timing.FirstToken
				if s.Timing.FirstToken <= 0 || s.Timing.Total < s.Timing.FirstToken {
					t.Errorf("stage %d timing %+v", i+1, s.Timing)
				}
			}
			if err := b.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
		return out
	}
	reuse, base := ttft(true), ttft(false)
	if reuse[0] != base[0] {
		t.Errorf("stage 1 first token: reuse %v, baseline %v; want equal", reuse[0], base[0])
	}
	for k := 1; k < 4; k++ {
		if reuse[k] >= base[k] {
			t.Errorf("stage %d first token: reuse %v, baseline %v; want sooner", k+1, reuse[k], base[k])
		}
	}
}

// TestFeatureCacheLRU: the cache evicts the least recently used entry and
// holds one reference per entry, dropped by eviction and clear.
func TestFeatureCacheLRU(t *testing.T) {
	e := newFakeEngine(4)
	c := newFeatureCache(2)
	h := func(i byte) [32]byte { return [32]byte{i} }
	f := make(map[byte]*features)
	for i := byte(1); i <= 3; i++ {
		hs, _ := e.EncodeImages([]engine.Image{{Pixels: []float32{float32(i)}}})
		f[i] = &features{h: hs[0]}
	}
	c.put(h(1), f[1])
	c.put(h(2), f[2])
	if _, ok := c.get(h(1)); !ok { // 1 becomes most recent
		t.Fatal("1 missing")
	}
	c.put(h(3), f[3]) // evicts 2
	if _, ok := c.get(h(2)); ok {
		t.Fatal("2 survived")
	}
	if got, ok := c.get(h(1)); !ok || got != f[1] {
		t.Fatal("1 evicted")
	}
	if n := e.liveFeatures.Load(); n != 2 || f[2].refs != 0 || f[1].refs != 1 {
		t.Fatalf("after eviction: %d live feature sets, references %d %d; want 2, 0, 1", n, f[1].refs, f[2].refs)
	}
	c.clear()
	if _, ok := c.get(h(3)); ok {
		t.Fatal("clear kept 3")
	}
	if n := e.liveFeatures.Load(); n != 0 {
		t.Fatalf("%d feature sets live after clear", n)
	}
}
