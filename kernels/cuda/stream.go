//go:build cuda

package cuda

import (
	"errors"
	"fmt"

	"gorgonia.org/cu"

	"github.com/pancap-serve/pancap/kernels"
)

// The side view: a second stream for work that must not hold up the main
// stream's decode steps (the vision tower). It is a Backend of its own for
// everything a stream's work needs alone (its stream, cuBLAS handle, pinned
// staging, scratch buffers, launch arguments) and shares the rest with its
// owner through root: the context, module and kernels, the allocations
// (freed by the owner's Close) and the lost state. The side stream does not
// synchronise with the legacy stream, so the owner's synchronous copies
// never wait for it, and its Writes are always staged (Write), so queuing
// work on it never waits for the device.

// Side returns the backend's side view, making its stream (and cuBLAS
// handle) on first use; a view's Side is itself. It panics with an error
// wrapping ErrCUDA when the stream cannot be made.
func (b *Backend) Side() kernels.Backend {
	if b.root != b {
		return b
	}
	if b.side != nil {
		return b.side
	}
	b.enter()
	defer b.leave()
	s := &Backend{dev: b.dev, ctx: b.ctx, mod: b.mod, fn: b.fn, name: b.name, sms: b.sms, allocs: b.allocs, root: b}
	if s.params = newParams(); s.params == nil {
		panic(fmt.Errorf("%w: no memory for the side stream's launch parameters", ErrCUDA))
	}
	var err error
	if s.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		freeParams(s.params)
		panic(b.fail("create the side stream", err))
	}
	if b.blas != nil {
		if s.blas, err = newCuBLAS(s.stream); err != nil {
			s.stream.Destroy()
			freeParams(s.params)
			panic(b.fail("cuBLAS handle of the side stream", err))
		}
	}
	b.side = s
	return s
}

// releaseView waits for the view's stream and frees what it owns alone;
// the owner's release calls it with the context current.
func (b *Backend) releaseView() {
	b.stream.Synchronize()
	if b.blas != nil {
		b.blas.close()
	}
	b.argOut.free()
	b.attnBuf.free()
	b.rope.free()
	b.stage.free()
	freeParams(b.params)
	b.stream.Destroy()
}

// event is a CUDA event recorded on one of the backend's streams.
type event struct {
	b  *Backend
	ev cu.Event
}

// Record records an event on the backend's (or view's) stream.
func (b *Backend) Record() kernels.Event {
	b.enter()
	defer b.leave()
	ev, err := cu.MakeEvent(cu.DisableTiming)
	b.must("cuEventCreate", err)
	if err := ev.Record(b.stream); err != nil {
		cu.DestroyEvent(&ev)
		panic(b.fail("cuEventRecord", err))
	}
	return &event{b: b.root, ev: ev}
}

// Wait makes the stream's later work wait for e (cuStreamWaitEvent).
func (b *Backend) Wait(e kernels.Event) {
	b.enter()
	defer b.leave()
	b.must("cuStreamWaitEvent", b.stream.Wait(e.(*event).ev, 0))
}

// Done polls the event (cuEventQuery). An error other than "not ready"
// reports true after recording it as the backend's (see fail): the next
// call reports it.
func (e *event) Done() bool {
	if e.b.begin() != nil {
		return true
	}
	defer e.b.leave()
	switch err := e.ev.Query(); {
	case err == nil:
		return true
	case errors.Is(err, cu.NotReady):
		return false
	default:
		e.b.fail("cuEventQuery", err)
		return true
	}
}

// Sync blocks until the event has completed (cuEventSynchronize); it
// panics with an error wrapping ErrCUDA when the wait fails.
func (e *event) Sync() {
	e.b.enter()
	defer e.b.leave()
	e.b.must("cuEventSynchronize", e.ev.Synchronize())
}

// Free destroys the event (pending or not). It never panics: on a lost
// context there is nothing left to free.
func (e *event) Free() {
	if e.b.begin() != nil {
		return
	}
	defer e.b.leave()
	if err := cu.DestroyEvent(&e.ev); err != nil {
		e.b.fail("cuEventDestroy", err)
	}
}
