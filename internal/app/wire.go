package app

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/engine"
)

// loadEngine loads the model cfg names (cfg.Model; "" means the embedded
// default model), merging the LoRA adapter cfg.LoRA when given, and logs the
// load report (unused tensors included).
func loadEngine(ctx context.Context, cfg ServeConfig) (engine.Engine, error) {
	m, rep, err := OpenModel(ctx, cfg.ModelFlags, cfg.Image)
	if err != nil {
		return nil, err
	}
	rep.Log(cfg.Logger)
	return m, nil
}

// startBatcher starts the batcher's step loop over eng with cfg's queue and
// reuse settings, registering its metrics with reg; stop drains it within
// cfg.DrainTimeout and waits for the loop to end.
func startBatcher(eng engine.Engine, cfg ServeConfig, reg prometheus.Registerer) (*batcher.Batcher, func(), error) {
	b := batcher.New(eng, batcher.Config{
		MaxQueue:     cfg.MaxQueue,
		Limits:       cfg.Limits,
		DecodeBudget: cfg.DecodeBudget,
		ChainReuse:   cfg.ChainReuse,
		Speculative:  speculative(eng, cfg),
		Metrics:      reg,
		Logger:       cfg.Logger,
	})
	reg.MustRegister(batcher.CacheConfigInfo(eng.Spec()))
	b.Start()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			cfg.Logger.Warn("batcher shutdown", "err", err)
		}
	}
	return b, stop, nil
}

// speculative reports whether the batcher over eng speculates: as
// --speculative asks, on the CPU backend only. Speculation keeps outputs
// unchanged only where a row's logits are the same in a one-row and a
// many-row step; the CUDA backend's cuBLAS GEMMs do not promise that.
func speculative(eng engine.Engine, cfg ServeConfig) bool {
	if dev := eng.Spec().Device; cfg.Speculative && dev != "cpu" {
		cfg.Logger.Warn("--speculative is off on this device: its GEMMs are not batch invariant, so drafts could change outputs", "device", dev)
		return false
	}
	return cfg.Speculative
}
