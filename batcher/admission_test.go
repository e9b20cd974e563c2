package batcher

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestQueuePlaceBeforeDecoding: a request takes its place in the queue
// before it decodes its image, so a full queue refuses the next request
// without decoding it.
func TestQueuePlaceBeforeDecoding(t *testing.T) {
	b, eng := newTest(t, 1024, Config{ChainReuse: true, MaxQueue: 1})
	eng.gate = make(chan struct{})
	first := make(chan error, 1)
	go func() {
		ch, err := b.SubmitChain(context.Background(), chainReq("a"))
		if err == nil {
			o := collect(t, ch)
			err = o.err
		}
		first <- err
	}()
	waitFor(t, "the first decode", func() bool { return eng.decoding.Load() == 1 })
	_, err := b.SubmitChain(context.Background(), chainReq("b"))
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("second request while the first decodes: %v, want ErrQueueFull", err)
	}
	if n := eng.decodes.Load(); n != 1 {
		t.Fatalf("%d decodes, want 1: the refused request was decoded", n)
	}
	close(eng.gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// TestDecodeBudget: decodes in flight stay within the budget, an image
// over the whole budget is refused undecoded, and a request waiting for
// budget gives up as soon as its context ends.
func TestDecodeBudget(t *testing.T) {
	const imageBytes = len("img:a") // chainReq's images
	b, eng := newTest(t, 1024, Config{ChainReuse: true, DecodeBudget: fakeImageCost * int64(imageBytes*3/2)})
	big := chainReq("a")
	big.Image = []byte(strings.Repeat("x", 2*imageBytes))
	if _, err := b.SubmitChain(context.Background(), big); !errors.Is(err, ErrInvalidImage) || !strings.Contains(err.Error(), "decode budget") {
		t.Fatalf("image over the budget: %v, want ErrInvalidImage naming the decode budget", err)
	}
	if eng.decodes.Load() != 0 {
		t.Fatal("the image over the budget was decoded")
	}

	eng.gate = make(chan struct{})
	first := make(chan error, 1)
	go func() {
		ch, err := b.SubmitChain(context.Background(), chainReq("a"))
		if err == nil {
			err = collect(t, ch).err
		}
		first <- err
	}()
	waitFor(t, "the first decode", func() bool { return eng.decoding.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() {
		_, err := b.SubmitChain(ctx, chainReq("b"))
		second <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if n := eng.decodes.Load(); n != 1 {
		t.Fatalf("%d decodes in flight, the budget holds one image", n)
	}
	start := time.Now()
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while waiting for budget: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the cancelled wait returned after %v", took)
	}
	close(eng.gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	runOne(t, b, chainReq("c")) // the budget was released
}
