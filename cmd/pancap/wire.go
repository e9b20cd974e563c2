package main

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/server"
)

// errEngineNotBuilt is returned until the engine and the batcher are wired in.
var errEngineNotBuilt = errors.New("engine not built yet: the model and batcher are wired in cmd/pancap/wire.go")

// loadEngine loads the model cfg names (cfg.Model; "" means the embedded
// default model), merging the LoRA adapter cfg.LoRA when given.
func loadEngine(ctx context.Context, cfg serveConfig) (engine.Engine, error) {
	return nil, errEngineNotBuilt
}

// startBatcher starts the batcher's step loop over eng with cfg's queue and
// KV-cache settings, registering its metrics with reg and logging to
// cfg.Logger; stop drains it and waits for the loop to end.
func startBatcher(eng engine.Engine, cfg serveConfig, reg prometheus.Registerer) (b server.Backend, stop func(), err error) {
	return nil, nil, errEngineNotBuilt
}
