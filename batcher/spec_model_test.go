package batcher_test

import (
	"context"
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
// on 64 held-out scenes, all submitted at once (mixed batches of every
// stage), are token for token the same with speculative decoding as
// without; and every stage accepts drafts.
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
	run := func(spec bool) ([]string, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		b := batcher.New(m, batcher.Config{ChainReuse: true, Speculative: spec, SpeculativeMaxBatch: len(reqs),
			MaxQueue: len(reqs), Metrics: reg})
		b.Start()
		defer func() {
			if err := b.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		}()
		return chainTexts(t, b, reqs, true), reg
	}
	want, _ := run(false)
	got, reg := run(true)
	for i := range reqs {
		if got[i] != want[i] {
			t.Errorf("scene %d with speculation:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	for _, stage := range []string{"localize", "tag", "discover", "caption"} {
		drafted := counter(t, reg, "pancap_spec_decode_num_draft_tokens_total", stage)
		accepted := counter(t, reg, "pancap_spec_decode_num_accepted_tokens_total", stage)
		t.Logf("%-8s %6.0f draft tokens, %6.0f accepted (%.0f%%)", stage, drafted, accepted, 100*accepted/drafted)
		if accepted == 0 {
			t.Errorf("%s accepted no draft token", stage)
		}
	}
}

// counter returns the value of the counter name{stage=stage} in reg.
func counter(t *testing.T, reg *prometheus.Registry, name, stage string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
