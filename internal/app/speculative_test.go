package app

import (
	"log/slog"
	"testing"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/server"
)

// deviceEngine is an engine that only reports its device.
type deviceEngine struct {
	engine.Engine
	device string
}

func (e deviceEngine) Spec() engine.Spec { return engine.Spec{Device: e.device} }

// TestSpeculativeOnlyOnCPU: --speculative takes effect on the CPU backend,
// whose rows are batch invariant, and is turned off elsewhere.
func TestSpeculativeOnlyOnCPU(t *testing.T) {
	cfg := ServeConfig{Config: server.Config{Logger: slog.New(slog.DiscardHandler)}, Speculative: true}
	for dev, want := range map[string]bool{"cpu": true, "cuda:0": false} {
		if got := speculative(deviceEngine{device: dev}, cfg); got != want {
			t.Errorf("--speculative on %s: %v, want %v", dev, got, want)
		}
	}
	cfg.Speculative = false
	if speculative(deviceEngine{device: "cpu"}, cfg) {
		t.Error("--speculative=false speculates")
	}
}
