package batcher_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/model"
	"github.com/pancap-serve/pancap/model/embedded"
)

// heldOutScenes reads the 64 held-out test scenes of training/scenes.py
// (seed 3) that testdata holds: testdata/scenes and testdata/scenes-extra.
func heldOutScenes(t *testing.T) [][]byte {
	t.Helper()
	var imgs [][]byte
	for _, dir := range []string{"../testdata/scenes/images", "../testdata/scenes-extra/images"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.png"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			imgs = append(imgs, data)
		}
	}
	if len(imgs) < 50 {
		t.Fatalf("%d held-out scenes, want at least 50", len(imgs))
	}
	return imgs
}

// TestSpeculativeSynthScenes: the embedded synth model's four-stage chains
// on 64 held-out scenes are token for token the same with speculative
// decoding as without, whether they run all at once (mixed batches of
// every stage, few drafts) or one at a time (many drafts); and the
// localize, tag and caption stages accept drafts.
func TestSpeculativeSynthScenes(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("runs the embedded model on 64 images")
	}
	m, _, err := embedded.Open(context.Background(), model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var reqs []batcher.ChainRequest
	for _, img := range heldOutScenes(t) {
		reqs = append(reqs, batcher.ChainRequest{Image: img})
	}
	reg := prometheus.NewRegistry()
	run := func(spec, concurrent bool) []string {
		cfg := batcher.Config{ChainReuse: true, SpeculativeMaxBatch: len(reqs), MaxQueue: len(reqs)}
		if spec {
			cfg.Speculative, cfg.Metrics = true, prometheus.WrapRegistererWith(prometheus.Labels{"concurrent": fmt.Sprint(concurrent)}, reg)
		}
		b := batcher.New(m, cfg)
		b.Start()
		defer func() {
			if err := b.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		}()
		return chainTexts(t, b, reqs, concurrent)
	}
	want := run(false, true)
	for _, concurrent := range []bool{true, false} {
		got := run(true, concurrent)
		for i := range reqs {
			if got[i] != want[i] {
				t.Errorf("scene %d with speculation (concurrent %v):\n got %s\nwant %s", i, concurrent, got[i], want[i])
			}
		}
	}
	for _, stage := range []string{"localize", "tag", "discover", "caption"} {
		drafted := counter(t, reg, "pancap_spec_decode_num_draft_tokens_total", stage)
		accepted := counter(t, reg, "pancap_spec_decode_num_accepted_tokens_total", stage)
		t.Logf("%-8s %6.0f draft tokens, %6.0f accepted (%.0f%%)", stage, drafted, accepted, 100*accepted/drafted)
		if accepted == 0 && stage != "discover" { // discover mostly answers "None"
			t.Errorf("%s accepted no draft token", stage)
		}
	}
}

// counter returns the sum of the counters name{stage=stage,…} in reg.
func counter(t *testing.T, reg *prometheus.Registry, name, stage string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
