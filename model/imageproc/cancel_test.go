package imageproc

import (
	"context"
	"errors"
	"testing"
	"time"
)

// cancelLatency is how soon a cancelled call must return: 100 ms, more
// under the race detector, which slows the work between two looks at the
// context about tenfold.
func cancelLatency() time.Duration {
	if raceEnabled {
		return time.Second
	}
	return 100 * time.Millisecond
}

// TestCancelStopsPromptly cancels Preprocess on inputs that cost seconds of
// CPU (each a worst case of its kind, scaled down) shortly after it starts:
// it must return the context's error within cancelLatency. Before contexts
// were threaded through, each of these ran to the end.
func TestCancelStopsPromptly(t *testing.T) {
	cases := []struct {
		name string
		data []byte
	}{
		{"jpeg scan bomb", scanBombJPEG(4000, 4000, 40_000_000, scanACRefine63, 0)},
		{"png 1×4M (resize)", thinPNG(t, 1, 4_000_000)},
		{"png 4M×1 (resize)", thinPNG(t, 4_000_000, 1)},
		{"png interlaced (decode)", interlacedPNG(t, 4000, 4000)},
		{"gif (decode)", manyFramesGIF(t, 4000, 4000, 1)},
		{"jpeg baseline (decode)", baselineJPEG(t, 4000, 3000)},
		{"webp lossless, no input bits (decode)", losslessWebP(16383, 2441)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := Preprocess(ctx, c.data, 336, DefaultLimits())
				done <- err
			}()
			time.Sleep(30 * time.Millisecond)
			t0 := time.Now()
			cancel()
			err := <-done
			took := time.Since(t0)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled (did the call end before the cancellation?)", err)
			}
			if took > cancelLatency() {
				t.Errorf("returned %v after the cancellation, want ≤ %v", took, cancelLatency())
			}
			t.Logf("returned %v after the cancellation", took)
		})
	}
}

func TestCanceledContextRefusesAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	if _, err := Decode(ctx, readTestdata(t, "progressive.jpg"), DefaultLimits()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Decode err = %v, want DeadlineExceeded", err)
	}
	if _, err := Preprocess(ctx, readTestdata(t, "rgb_tall.png"), 56, DefaultLimits()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Preprocess err = %v, want DeadlineExceeded", err)
	}
}
