package model_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu"
	"github.com/pancap-serve/pancap/model"
)

// losingBackend is the CPU backend whose Add and AddRMSNorm (the residual
// adds of the vision tower and of the language model) panic, once fault is
// set, with what fault holds: a lost device's error, as the CUDA backend's
// methods without an error result do, or anything else.
type losingBackend struct {
	kernels.Backend
	fault atomic.Pointer[any]
}

func (b *losingBackend) check() {
	if f := b.fault.Load(); f != nil {
		panic(*f)
	}
}

func (b *losingBackend) Add(out, x, y kernels.Buffer, n int) {
	b.check()
	b.Backend.Add(out, x, y, n)
}

func (b *losingBackend) AddRMSNorm(out, x, delta kernels.Buffer, w kernels.Weight, rows int, eps float32) {
	b.check()
	b.Backend.AddRMSNorm(out, x, delta, w, rows, eps)
}

// Side is the backend itself, so that the vision tower's work faults too.
func (b *losingBackend) Side() kernels.Backend { return b }

// TestDeviceLostIsReturned: a backend that panics with a lost-device error
// in EncodeImages or Forward makes them return an error that is
// engine.ErrDeviceLost and still the backend's; another panic goes on.
func TestDeviceLostIsReturned(t *testing.T) {
	c := tinyCase(t)
	be := &losingBackend{Backend: cpu.New(0)}
	m, _, err := model.Open(context.Background(), filepath.Join(repoRoot, c.Checkpoint, "llava"),
		model.Options{KVBlocks: 96, KVBlockSize: 8, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	img := []engine.Image{{Pixels: c.F32(t, "pixel_values.f32")}}
	chunk := []engine.Chunk{{Blocks: []int32{0}, Tokens: []int32{1, 2}, Logits: true}}
	var lost any = fmt.Errorf("%w: injected illegal address", kernels.ErrDeviceLost)
	be.fault.Store(&lost)
	for name, call := range map[string]func() error{
		"EncodeImages": func() error { _, err := m.EncodeImages(img); return err },
		"Forward":      func() error { _, err := m.Forward(chunk); return err },
	} {
		err := call()
		if !errors.Is(err, engine.ErrDeviceLost) || !errors.Is(err, kernels.ErrDeviceLost) || err.Error() != lost.(error).Error() {
			t.Errorf("%s on a lost device: %v, want the backend's error as engine.ErrDeviceLost", name, err)
		}
	}
	var other any = "some other failure"
	be.fault.Store(&other)
	func() {
		defer func() {
			if r := recover(); r != other {
				t.Errorf("Forward's other panic: recovered %v, want it to go on", r)
			}
		}()
		m.Forward(chunk)
	}()
}
