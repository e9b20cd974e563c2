package batcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/pancap-serve/pancap/chain"
)

// TestMain checks for leaked goroutines; the CPU GEMM's worker pool lives
// for the process by design.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/pancap-serve/pancap/kernels/cpu/linalg.(*parker).wait"))
}

// outcome is what a test keeps of one request's stream.
type outcome struct {
	stages []string // "stage|finish|text|ids" per stage
	deltas []string // concatenated deltas per stage
	events []Event  // all events
	result *Result  // nil on error
	err    error    // EventDone's error
}

// collect reads a stream to its end and checks the event order and the
// streaming invariants.
func collect(t *testing.T, ch <-chan Event) outcome {
	t.Helper()
	var o outcome
	timeout := time.After(30 * time.Second)
	var cur strings.Builder
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				if len(o.events) == 0 || o.events[len(o.events)-1].Kind != EventDone {
					t.Errorf("stream closed without EventDone")
				}
				return o
			}
			o.events = append(o.events, ev)
			switch ev.Kind {
			case EventDelta:
				if !utf8.ValidString(ev.Text) {
					t.Errorf("delta %q splits a UTF-8 sequence", ev.Text)
				}
				cur.WriteString(ev.Text)
			case EventStageFinished:
				o.deltas = append(o.deltas, cur.String())
				if cur.String() != ev.Text {
					t.Errorf("stage %d: deltas %q != text %q", ev.Stage, cur.String(), ev.Text)
				}
				cur.Reset()
			case EventDone:
				o.result, o.err = ev.Result, ev.Err
				if o.result != nil {
					for _, s := range o.result.Stages {
						o.stages = append(o.stages, fmt.Sprintf("%d|%s|%s|%v", s.Stage, s.Finish, s.Text, s.TokenIDs))
					}
				}
			}
		case <-timeout:
			t.Fatal("stream did not finish")
		}
	}
}

// newTest returns a started batcher over a fresh fake engine whose
// features become ready encodeSteps[0] Forward calls after their encode (0:
// at once). At the test's end it shuts the batcher down and checks that
// every image's features were released.
func newTest(t *testing.T, blocks int, cfg Config, encodeSteps ...int64) (*Batcher, *fakeEngine) {
	t.Helper()
	b, eng := newStopped(t, blocks, cfg, encodeSteps...)
	b.Start()
	return b, eng
}

// newStopped is newTest without Start.
func newStopped(t *testing.T, blocks int, cfg Config, encodeSteps ...int64) (*Batcher, *fakeEngine) {
	t.Helper()
	eng := newFakeEngine(blocks)
	if len(encodeSteps) > 0 {
		eng.encodeSteps = encodeSteps[0]
	}
	b := New(eng, cfg)
	t.Cleanup(func() {
		if err := b.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if n := eng.liveFeatures.Load(); n != 0 {
			t.Errorf("%d image feature sets never released", n)
		}
	})
	return b, eng
}

// submitChains submits n chains, over images prefix0, prefix1, …, and
// returns their streams.
func submitChains(t *testing.T, b *Batcher, prefix string, n int) []<-chan Event {
	t.Helper()
	var chans []<-chan Event
	for i := range n {
		ch, err := b.SubmitChain(context.Background(), chainReq(fmt.Sprint(prefix, i)))
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	return chans
}

// chainReq is a small chain over image name.
func chainReq(name string) ChainRequest {
	return ChainRequest{RequestID: name, Image: []byte("img:" + name), MaxNewTokens: [4]int{24, 24, 16, 32}}
}

// runOne runs one chain alone and returns its outcome.
func runOne(t *testing.T, b *Batcher, r ChainRequest) outcome {
	t.Helper()
	ch, err := b.SubmitChain(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	o := collect(t, ch)
	if o.err != nil {
		t.Fatalf("%s: %v", r.RequestID, o.err)
	}
	return o
}

func TestChainEvents(t *testing.T) {
	base, _ := newTest(t, 1024, Config{})
	b, _ := newTest(t, 1024, Config{ChainReuse: true})
	o := runOne(t, b, chainReq("a"))
	kinds := func(o outcome) []EventKind {
		var ks []EventKind
		for _, ev := range o.events {
			if ev.Kind != EventDelta {
				ks = append(ks, ev.Kind)
			}
		}
		return ks
	}
	stage := []EventKind{EventStageStarted, EventStageFinished}
	reuse := slices.Concat([]EventKind{EventQueued, EventImageEncoded}, stage, stage, stage, stage, []EventKind{EventDone})
	if got := kinds(o); !slices.Equal(got, reuse) {
		t.Fatalf("reuse mode: event kinds %v, want %v", got, reuse)
	}
	stage = slices.Concat([]EventKind{EventImageEncoded}, stage)
	baseline := slices.Concat([]EventKind{EventQueued}, stage, stage, stage, stage, []EventKind{EventDone})
	if got := kinds(runOne(t, base, chainReq("a"))); !slices.Equal(got, baseline) {
		t.Fatalf("baseline: event kinds %v, want %v", got, baseline)
	}
	if len(o.result.Stages) != 4 || o.result.Width != 100 || o.result.Height != 60 {
		t.Fatalf("result %+v", o.result)
	}
	for i, s := range o.result.Stages {
		if s.Stage != chain.Stage(i+1) || s.Usage.GeneratedTokens == 0 || s.Usage.PromptTokens <= 6 {
			t.Errorf("stage %d: %+v", i+1, s)
		}
		if i > 0 && s.Usage.CachedTokens < 150 {
			t.Errorf("stage %d reused only %d cached tokens of the shared prefix", i+1, s.Usage.CachedTokens)
		}
		if got := strings.TrimSpace(fakeTokenizer{}.Decode(s.TokenIDs)); s.Finish != "stop" && got != s.Text {
			t.Errorf("stage %d text %q != strip(decode(ids)) %q", i+1, s.Text, got)
		}
	}
	if o.result.Caption != o.result.Stages[3].Text {
		t.Errorf("caption %q", o.result.Caption)
	}
}

// TestConcurrentMatchesSequential: 16 chains submitted together, in random
// orders and in both modes, give token-for-token the outputs of the same
// chains run one at a time.
func TestConcurrentMatchesSequential(t *testing.T) {
	var reqs []ChainRequest
	for i := range 16 {
		reqs = append(reqs, chainReq(fmt.Sprint("img", i%12))) // four images twice
		reqs[i].RequestID = fmt.Sprint("r", i)
	}
	want := map[string][]string{}
	ref, _ := newTest(t, 2048, Config{ChainReuse: true})
	for _, r := range reqs {
		want[r.RequestID] = runOne(t, ref, r).stages
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for trial, reuse := range []bool{true, false, true} {
		b, eng := newTest(t, 2048, Config{ChainReuse: reuse, MaxBatchTokens: 48, MaxEncodeBatch: 3})
		order := rng.Perm(len(reqs))
		var wg sync.WaitGroup
		for _, i := range order {
			ch, err := b.SubmitChain(context.Background(), reqs[i])
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				o := collect(t, ch)
				if o.err != nil {
					t.Errorf("trial %d %s: %v", trial, reqs[i].RequestID, o.err)
					return
				}
				if fmt.Sprint(o.stages) != fmt.Sprint(want[reqs[i].RequestID]) {
					t.Errorf("trial %d (reuse %v) %s differs from the sequential run:\n got %v\nwant %v",
						trial, reuse, reqs[i].RequestID, o.stages, want[reqs[i].RequestID])
				}
			})
		}
		wg.Wait()
		if st := b.kv.Stats(); st.Used != 0 {
			t.Errorf("trial %d: %d blocks still used", trial, st.Used)
		}
		enc := eng.imagesEncoded.Load()
		if reuse && enc != 12 {
			t.Errorf("reuse mode encoded %d images, want 12 (one per distinct image)", enc)
		}
		if !reuse && enc != 64 {
			t.Errorf("baseline encoded %d images, want 64 (one per stage)", enc)
		}
		if eng.encodeCalls.Load() >= enc {
			t.Errorf("%d encoder calls for %d images: no vision batching", eng.encodeCalls.Load(), enc)
		}
	}
}

func TestVisionOncePerImageAndPrefixHits(t *testing.T) {
	for _, reuse := range []bool{true, false} {
		reg := prometheus.NewPedanticRegistry()
		b, eng := newTest(t, 1024, Config{ChainReuse: reuse, Metrics: reg})
		first := runOne(t, b, chainReq("same"))
		second := runOne(t, b, chainReq("same"))
		if fmt.Sprint(first.stages) != fmt.Sprint(second.stages) {
			t.Fatalf("repeat differs")
		}
		runs := testutil.ToFloat64(b.m.visionRuns)
		hits := testutil.ToFloat64(b.m.prefixHit)
		cached := second.result.Stages[0].Usage.CachedTokens
		if reuse {
			if runs != 1 || eng.imagesEncoded.Load() != 1 {
				t.Errorf("reuse: vision encoder ran %v times for one image", runs)
			}
			if hits == 0 || cached < 150 {
				t.Errorf("reuse: repeated image hit %v tokens, stage 1 cached %d", hits, cached)
			}
			var ev Event
			for _, e := range second.events {
				if e.Kind == EventImageEncoded {
					ev = e
				}
			}
			if !ev.Cached {
				t.Errorf("second request's image event %+v, want cached", ev)
			}
		} else if runs != 8 || hits != 0 || cached != 0 {
			t.Errorf("baseline: %v encoder runs, %v hits, %d cached; want 8, 0, 0", runs, hits, cached)
		}
		if n, err := testutil.GatherAndCount(reg); err != nil || n < 10 {
			t.Errorf("metrics gather: %d series, %v", n, err)
		}
	}
}

// TestCancelHalf cancels 16 of 32 streams after their first delta: every KV
// block comes back and the others finish with their sequential outputs.
func TestCancelHalf(t *testing.T) {
	ref, _ := newTest(t, 2048, Config{ChainReuse: true})
	b, _ := newTest(t, 2048, Config{ChainReuse: true, MaxBatchTokens: 64})
	var reqs []ChainRequest
	wants := map[int][]string{}
	for i := range 32 {
		r := chainReq(fmt.Sprint("c", i))
		r.Stages, r.IgnoreEOS = 2, true
		reqs = append(reqs, r)
		if i%2 == 1 {
			wants[i] = runOne(t, ref, r).stages
		}
	}
	var wg sync.WaitGroup
	for i, r := range reqs {
		want := wants[i]
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := b.SubmitChain(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer cancel()
			if i%2 == 1 {
				o := collect(t, ch)
				if o.err != nil || fmt.Sprint(o.stages) != fmt.Sprint(want) {
					t.Errorf("survivor %d: err %v, stages %v want %v", i, o.err, o.stages, want)
				}
				return
			}
			for ev := range ch {
				if ev.Kind == EventDelta {
					cancel()
				}
				if ev.Kind == EventDone && ev.Err != nil && !errors.Is(ev.Err, context.Canceled) {
					t.Errorf("cancelled %d: %v", i, ev.Err)
				}
			}
		})
	}
	wg.Wait()
	// The loop frees a cancelled request's blocks within one step; the
	// last stream may end before the loop's next step.
	deadline := time.Now().Add(5 * time.Second)
	for b.active.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := b.KVStats()
	if st.Used != 0 || st.Free+st.Cached != st.Blocks {
		t.Fatalf("blocks not returned: %+v", st)
	}
}

// TestQueueFlood submits 10× the queue capacity: the excess gets
// ErrQueueFull at once and the admitted ones finish.
func TestQueueFlood(t *testing.T) {
	eng := newFakeEngine(1024)
	b := New(eng, Config{ChainReuse: true, MaxQueue: 4})
	var chans []<-chan Event
	full := 0
	for i := range 40 {
		r := chainReq(fmt.Sprint("f", i))
		r.Stages = 1
		ch, err := b.SubmitChain(context.Background(), r)
		switch {
		case err == nil:
			chans = append(chans, ch)
		case errors.Is(err, ErrQueueFull):
			full++
			if !strings.Contains(err.Error(), "queue length 4") {
				t.Errorf("message %q lacks the queue length", err)
			}
		default:
			t.Fatal(err)
		}
	}
	if len(chans) != 4 || full != 36 {
		t.Fatalf("%d admitted, %d refused; want 4 and 36", len(chans), full)
	}
	b.Start()
	for _, ch := range chans {
		if o := collect(t, ch); o.err != nil {
			t.Errorf("admitted request failed: %v", o.err)
		}
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SubmitChain(context.Background(), chainReq("late")); !errors.Is(err, ErrNotServing) {
		t.Fatalf("after shutdown: %v", err)
	}
	if r, w, kv := testutil.ToFloat64(b.m.running), testutil.ToFloat64(b.m.waiting), testutil.ToFloat64(b.m.kvUsage); r+w+kv != 0 {
		t.Fatalf("gauges after shutdown: running %v, waiting %v, kv usage %v", r, w, kv)
	}
}

func TestPanicRecovery(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, eng := newTest(t, 1024, Config{ChainReuse: true, Metrics: reg, Logger: quietLogger()})
	eng.panicAt.Store(3)
	chans := submitChains(t, b, "p", 4)
	// The requests in flight at the panic fail with ErrInternal; one still
	// queued then (the step loop may have started before all four were
	// submitted) is served by the restarted loop. None may hang or end
	// otherwise.
	failed := 0
	for _, ch := range chans {
		switch o := collect(t, ch); {
		case errors.Is(o.err, ErrInternal):
			failed++
		case o.err != nil || len(o.result.Stages) != 4:
			t.Errorf("request: %v, %d stages; want ErrInternal or a whole chain", o.err, len(o.result.Stages))
		}
	}
	if failed == 0 {
		t.Error("no request failed with ErrInternal")
	}
	o := runOne(t, b, chainReq("after"))
	if len(o.result.Stages) != 4 || !b.Ready() {
		t.Fatalf("after the panic: %d stages, ready %v", len(o.result.Stages), b.Ready())
	}
	if testutil.ToFloat64(b.m.panics) != 1 {
		t.Fatal("panic not counted")
	}
}

func TestShutdownDrainsThenCancels(t *testing.T) {
	eng := newFakeEngine(1024)
	b := New(eng, Config{ChainReuse: true})
	b.Start()
	ch, err := b.SubmitChain(context.Background(), chainReq("d"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan outcome)
	go func() { done <- collect(t, ch) }()
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if o := <-done; o.err != nil || len(o.result.Stages) != 4 {
		t.Fatalf("drained request: %v", o.err)
	}
	if b.Ready() {
		t.Fatal("ready after shutdown")
	}

	eng = newFakeEngine(1024)
	eng.delay = time.Millisecond
	b = New(eng, Config{ChainReuse: true})
	b.Start()
	r := chainReq("long")
	r.IgnoreEOS = true
	ch, err = b.SubmitChain(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- collect(t, ch) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := b.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v", err)
	}
	if o := <-done; !errors.Is(o.err, ErrNotServing) {
		t.Fatalf("cut-off request: %v, want ErrNotServing", o.err)
	}
}

// TestChainHandoff runs a scripted chain: each stage's parsed list reaches
// the next stage's prompt, and the result carries the merged entities.
func TestChainHandoff(t *testing.T) {
	eng := newFakeEngine(1024)
	eng.script = map[string]string{
		"localize":  "<box>[[0, 500, 1000, 1000]]</box>, <box>[[0, 500, 1000, 1000]]</box>, <box>[[1, 2, 3, 4]]</box>",
		"semantic":  "cat <box>[[0, 500, 1000, 1000]]</box>, dog <box>[[1, 2, 3, 4]]</box>, bad item",
		"missing":   "sky <box>[[0, 0, 1000, 400]]</box>",
		"hyper-det": "A cat <box>[[0, 500, 1000, 1000]]</box> under the sky <box>[[0, 0, 1000, 400]]</box>.",
	}
	b := New(eng, Config{ChainReuse: true})
	b.Start()
	defer b.Shutdown(context.Background())
	r := chainReq("scripted")
	r.MaxNewTokens = [4]int{200, 200, 200, 200}
	o := runOne(t, b, r)
	st := o.result.Stages
	lists := []string{
		"<box>[[0, 500, 1000, 1000]]</box>, <box>[[1, 2, 3, 4]]</box>",
		"cat <box>[[0, 500, 1000, 1000]]</box>, dog <box>[[1, 2, 3, 4]]</box>",
		"cat <box>[[0, 500, 1000, 1000]]</box>, dog <box>[[1, 2, 3, 4]]</box>, sky <box>[[0, 0, 1000, 400]]</box>",
	}
	for k := 1; k < 4; k++ {
		if want := b.base[k] + len(lists[k-1]); st[k].Usage.PromptTokens != want {
			t.Errorf("stage %d prompt has %d tokens, want %d (with list %q)", k+1, st[k].Usage.PromptTokens, want, lists[k-1])
		}
	}
	if len(st[0].Entities) != 2 || len(st[1].Entities) != 2 || len(st[2].Entities) != 3 {
		t.Fatalf("entities per stage: %d %d %d", len(st[0].Entities), len(st[1].Entities), len(st[2].Entities))
	}
	final := o.result.Entities
	if len(final) != 3 || final[2].Tag != "sky" || final[2].Stage != chain.Discover || final[0].Stage != chain.Tag {
		t.Fatalf("final entities %+v", final)
	}
	// 100×60 image padded to 100×100 (20 px above): y 500‰ → 50−20 = 30.
	if p := final[0].Pixel; p != (chain.PixelBox{0, 30, 100, 60}) {
		t.Errorf("pixel box %v", p)
	}
	if len(o.result.Mentions) != 2 || o.result.Caption != eng.script["hyper-det"] {
		t.Errorf("caption %q mentions %+v", o.result.Caption, o.result.Mentions)
	}
}

// TestSlowReader: a stream nobody reads does not hold back the others.
func TestSlowReader(t *testing.T) {
	b, _ := newTest(t, 1024, Config{ChainReuse: true})
	slow := chainReq("slow")
	slow.IgnoreEOS = true
	idle, err := b.SubmitChain(context.Background(), slow)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		runOne(t, b, chainReq(fmt.Sprint("fast", i)))
	}
	o := collect(t, idle)
	if o.err != nil || len(o.result.Stages) != 4 {
		t.Fatalf("slow reader's request: %v", o.err)
	}
	if n := len(o.events); n < 4*16 {
		t.Fatalf("slow reader got %d events, want every delta", n)
	}
}

// TestConcurrentSameImage: chains for one image submitted together compute
// its prefix once; the followers wait for the leader's blocks.
func TestConcurrentSameImage(t *testing.T) {
	ref, _ := newTest(t, 1024, Config{ChainReuse: true})
	want := runOne(t, ref, chainReq("same")).stages
	b, eng := newTest(t, 2048, Config{ChainReuse: true, MaxBatchTokens: 64})
	var chans []<-chan Event
	for range 8 {
		ch, err := b.SubmitChain(context.Background(), chainReq("same"))
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	cold := 0
	for _, ch := range chans {
		o := collect(t, ch)
		if o.err != nil || fmt.Sprint(o.stages) != fmt.Sprint(want) {
			t.Fatalf("err %v\n got %v\nwant %v", o.err, o.stages, want)
		}
		if o.result.Stages[0].Usage.CachedTokens < 150 {
			cold++
		}
	}
	if cold != 1 {
		t.Errorf("%d of 8 chains prefilled the shared prefix themselves, want 1", cold)
	}
	if n := eng.imagesEncoded.Load(); n != 1 {
		t.Errorf("%d encodes of one image", n)
	}
}
