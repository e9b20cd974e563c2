//go:build cuda

package app

import (
	"fmt"
	"os"
	"time"

	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cuda"
)

// How a lost GPU ends the process: the device is checked every lostPoll;
// once it is lost, the calls in flight have lostGrace to receive their
// error (the batcher fails them with it at its next step), then the process
// exits with status lostExit so that its supervisor starts a fresh one (a
// sticky CUDA error cannot be cleared in-process).
const (
	lostPoll  = 100 * time.Millisecond
	lostGrace = 2 * time.Second
	lostExit  = 3
)

// newBackend returns the compute backend of --device; nil means the CPU
// backend on every core. A CUDA backend is watched for a lost device (see
// lostPoll).
func newBackend(device string) (kernels.Backend, error) {
	kind, ordinal, err := parseDevice(device)
	if err != nil || kind == "cpu" {
		return nil, err
	}
	b, err := cuda.New(cuda.Options{Device: ordinal})
	if err != nil {
		return nil, err
	}
	go watchDevice(b, lostPoll, lostGrace, func(err error) {
		fmt.Fprintf(os.Stderr, "pancap: exiting (status %d): %v\n", lostExit, err)
		os.Exit(lostExit)
	})
	return b, nil
}
