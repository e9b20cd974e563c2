package main

import (
	"context"
	"testing"

	"github.com/pancap-serve/pancap/internal/app"
	"github.com/pancap-serve/pancap/internal/testsupport"
	"github.com/spf13/pflag"
)

// qualityScenes are the first 32 scenes of the held-out test split of
// training/scenes.py (seed 3), which the embedded model never saw.
const qualityScenes = "../../testdata/scenes"

// qualityFloor is the least F1 per dimension the embedded model must keep on
// qualityScenes. The floors sit well under what the current model scores
// there (tag 0.69, location 0.23: 28 of 123 boxes; list tag 0.71, list
// location 0.29: 36), far below issue 10's targets (0.90 / 0.70), which a
// better-trained model must reach before they replace these. They still
// catch engine bugs: with the RoPE base doubled, or the image tokens shifted
// by one (CLS kept, the last patch dropped), the tags stay about as good but
// location falls to 0–5 boxes and list location to 3–7, under the floors.
var qualityFloor = map[string]float64{"tag": 0.55, "location": 0.12, "list tag": 0.60, "list location": 0.15}

// TestDefaultModelQuality is the quality gate of the embedded default model:
// `pancap eval` runs the four-stage chain through `pancap serve`'s wiring
// (embedded model, real batcher, gRPC) on qualityScenes, and the final
// entities must match the ground truth at least as well as qualityFloor
// asks. Greedy decoding on the CPU backend is deterministic, so the scores
// are fixed numbers unless the engine changes.
func TestDefaultModelQuality(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the embedded model on 32 images")
	}
	addr := startServe(t)
	rep := evalReport(t, addr, "--data", qualityScenes, "--concurrency", "8")
	if rep.Images != 32 {
		t.Fatalf("scored %d images, want 32", rep.Images)
	}
	for _, d := range rep.Dimensions {
		t.Logf("%-13s F1 %.3f %+v", d.Name, d.F1, d.Counts)
		if min, ok := qualityFloor[d.Name]; ok && d.F1 < min {
			t.Errorf("%s F1 %.3f < %.2f", d.Name, d.F1, min)
		}
	}
}

// startServe runs the whole serving process (app.Serve, the embedded model,
// every default) on a free loopback port until the test ends, and returns
// its address once it reports SERVING.
func startServe(t *testing.T) string {
	t.Helper()
	cfg := app.NewServeConfig(pflag.NewFlagSet("serve", pflag.ContinueOnError))
	cfg.Addr, cfg.LogLevel = testsupport.FreeAddr(t), "warn"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, *cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	if _, _, err := run(t, "health", "--addr", cfg.Addr, "--wait", "60s"); err != nil {
		t.Fatal(err)
	}
	return cfg.Addr
}
