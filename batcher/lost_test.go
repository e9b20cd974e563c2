package batcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pancap-serve/pancap/engine"
)

// isLost reports whether err is the error of a batcher stopped by a lost
// device: not serving, the engine's cause, a message saying so.
func isLost(err error) bool {
	return errors.Is(err, ErrNotServing) && errors.Is(err, engine.ErrDeviceLost) &&
		strings.Contains(err.Error(), "the accelerator failed") && strings.Contains(err.Error(), "restarting")
}

// TestDeviceLost: when Forward reports the device lost mid-stream, returned
// or panicked, every running and queued request fails with ErrNotServing
// wrapping engine.ErrDeviceLost, the step loop stops for good (no restart,
// no further Forward), later submissions are refused with the same error,
// Ready is false and Fatal is closed.
func TestDeviceLost(t *testing.T) {
	for _, panics := range []bool{false, true} {
		t.Run(fmt.Sprint("panics=", panics), func(t *testing.T) {
			eng := newFakeEngine(160) // about two chains' prompts at once: the rest wait
			eng.lostAt.Store(8)
			eng.lostPanics = panics
			b := New(eng, Config{ChainReuse: true, Logger: quietLogger()})
			defer b.Shutdown(context.Background())
			chans := submitChains(t, b, "l", 6)
			b.Start()
			running, queued := 0, 0
			for i, ch := range chans {
				o := collect(t, ch)
				if !isLost(o.err) {
					t.Fatalf("request %d: %v, want the lost device's error", i, o.err)
				}
				if len(o.events) == 2 { // EventQueued, EventDone
					queued++
				} else {
					running++
				}
			}
			if running == 0 || queued == 0 {
				t.Errorf("%d running and %d queued requests at the loss, want both", running, queued)
			}
			select {
			case <-b.Fatal():
			case <-time.After(5 * time.Second):
				t.Fatal("Fatal not closed")
			}
			if !isLost(b.Err()) || b.Ready() {
				t.Errorf("after the loss: Err %v, Ready %v", b.Err(), b.Ready())
			}
			if _, err := b.SubmitChain(context.Background(), chainReq("late")); !isLost(err) {
				t.Errorf("submission after the loss: %v, want the lost device's error", err)
			}
			time.Sleep(20 * time.Millisecond)
			if n := eng.forwards.Load(); n != 8 {
				t.Errorf("%d Forward calls, want 8: the loop went on after the loss", n)
			}
			if testutil.ToFloat64(b.m.panics) != 0 {
				t.Error("the loss was counted as a step loop panic")
			}
			if err := b.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown after the loss: %v", err)
			}
		})
	}
}
