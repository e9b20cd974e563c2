package batcher

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// asyncRun serves a text generation and a chain over an image, admitted
// in the same step, on an engine whose features are ready encodeSteps
// Forward calls after their encode, and returns both outcomes.
func asyncRun(t *testing.T, encodeSteps int64) (text, img outcome, eng *fakeEngine) {
	t.Helper()
	b, eng := newStopped(t, 1024, Config{ChainReuse: true}, encodeSteps)
	r := genReq("Tell a long story.", "")
	r.MaxNewTokens = 120
	ch, err := b.SubmitGenerate(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	ich, err := b.SubmitChain(context.Background(), chainReq("pic"))
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	text, img = collect(t, ch), collect(t, ich)
	if text.err != nil || img.err != nil {
		t.Fatalf("errors %v, %v", text.err, img.err)
	}
	return text, img, eng
}

// TestEncodeBesideDecode: while an image's features are not ready, the
// step loop keeps decoding the other sequences (steps run beside the
// pending encode, and the loop never blocks on it), schedules the image's
// rows once ready, and every token is what an engine with ready features
// gives.
func TestEncodeBesideDecode(t *testing.T) {
	const steps = 6
	wantText, wantImg, _ := asyncRun(t, 0)
	text, img, eng := asyncRun(t, steps)
	if fmt.Sprint(text.stages) != fmt.Sprint(wantText.stages) || fmt.Sprint(img.stages) != fmt.Sprint(wantImg.stages) {
		t.Errorf("outputs changed with a pending encode:\n got %v\n     %v\nwant %v\n     %v", text.stages, img.stages, wantText.stages, wantImg.stages)
	}
	if n := eng.pendingSteps.Load(); n < steps-1 {
		t.Errorf("%d steps ran while the encode was pending, want %d", n, steps-1)
	}
	if n := eng.featureWaits.Load(); n != 0 {
		t.Errorf("the step loop blocked on features %d times while it had decode work", n)
	}
}

// TestEncodeAlone: with nothing else to run, the step loop waits for the
// features instead of spinning, and the output is unchanged.
func TestEncodeAlone(t *testing.T) {
	ref, _ := newTest(t, 1024, Config{ChainReuse: true})
	b, eng := newTest(t, 1024, Config{ChainReuse: true}, 1000)
	want, got := runOne(t, ref, chainReq("alone")), runOne(t, b, chainReq("alone"))
	if fmt.Sprint(got.stages) != fmt.Sprint(want.stages) {
		t.Errorf("got %v\nwant %v", got.stages, want.stages)
	}
	if eng.featureWaits.Load() == 0 {
		t.Error("features 1000 steps away became ready without a Wait")
	}
}

// TestFeaturesReleased: features are released exactly once (the fake
// panics on a second Release, newTest's cleanup counts the unreleased)
// whether their requests end normally, are cancelled while the encode is
// pending, or are preempted and recomputed, in both modes.
func TestFeaturesReleased(t *testing.T) {
	for _, reuse := range []bool{true, false} {
		b, eng := newTest(t, 140, Config{ChainReuse: reuse, MaxBatchTokens: 64, FeatureCache: 1}, 3)
		ctx, cancel := context.WithCancel(context.Background())
		gone, err := b.SubmitGenerate(ctx, genReq("Cancelled early.", "gone"))
		if err != nil {
			t.Fatal(err)
		}
		chans := []<-chan Event{gone}
		for i := range 4 {
			r := genReq(fmt.Sprintf("Request number %d, please answer.", i), fmt.Sprint("im", i%3))
			r.MaxNewTokens = 100 // 78 blocks alone, 53 at admission: two run and outgrow the pool
			ch, err := b.SubmitGenerate(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			chans = append(chans, ch)
		}
		for eng.imagesEncoded.Load() == 0 { // cancel once its encode is queued
			time.Sleep(time.Millisecond)
		}
		cancel()
		for i, ch := range chans {
			o := collect(t, ch)
			switch {
			case i == 0 && o.err != nil && !errors.Is(o.err, context.Canceled):
				t.Errorf("cancelled request: %v", o.err)
			case i > 0 && o.err != nil:
				t.Errorf("request %d: %v", i, o.err)
			}
		}
		if testutil.ToFloat64(b.m.preemptions) == 0 {
			t.Errorf("reuse %v: no preemption happened", reuse)
		}
		if reuse && eng.liveFeatures.Load() > 1 {
			t.Errorf("%d feature sets live after every request ended; the cache holds 1", eng.liveFeatures.Load())
		}
		if !reuse && eng.liveFeatures.Load() != 0 {
			t.Errorf("%d feature sets live after every request ended (baseline: no cache)", eng.liveFeatures.Load())
		}
	}
}
