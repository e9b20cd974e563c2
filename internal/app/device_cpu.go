//go:build !cuda

package app

import (
	"errors"

	"github.com/pancap-serve/pancap/kernels"
)

// newBackend returns the compute backend of --device; nil means the CPU
// backend on every core. This binary was built without the cuda tag.
func newBackend(device string) (kernels.Backend, error) {
	kind, _, err := parseDevice(device)
	if err != nil {
		return nil, err
	}
	if kind != "cpu" {
		return nil, errors.New("--device " + device + ": this binary was built without CUDA (build it with `go build -tags cuda`, see docs/cuda.md)")
	}
	return nil, nil
}
