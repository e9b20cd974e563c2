//go:build cuda

package app

import (
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cuda"
)

// newBackend returns the compute backend of --device; nil means the CPU
// backend on every core. A lost CUDA device (a sticky error) fails the
// engine's calls with engine.ErrDeviceLost: the batcher then stops and
// Serve ends with ExitDeviceLost.
func newBackend(device string) (kernels.Backend, error) {
	kind, ordinal, err := parseDevice(device)
	if err != nil || kind == "cpu" {
		return nil, err
	}
	return cuda.New(cuda.Options{Device: ordinal})
}
