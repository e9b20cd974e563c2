package batcher

import (
	"context"
	"sync"
	"time"
)

// finalGrace is how long the final event of a cancelled request waits for a
// reader before the stream gives up on it.
const finalGrace = 100 * time.Millisecond

// stream carries one request's events from the step loop to its reader. Push
// never blocks: events queue in an unbounded buffer that a goroutine per
// stream drains into the channel the caller reads, so a slow reader stalls
// nobody else. Once the request's context is done, events other than the
// final one are dropped, and the final one waits at most finalGrace.
type stream struct {
	ctx    context.Context
	out    chan Event
	signal chan struct{} // capacity 1: "buf is not empty"

	mu  sync.Mutex
	buf []Event
}

// newStream returns a stream for ctx and starts its forwarding goroutine,
// which closes the channel after the EventDone.
func newStream(ctx context.Context) *stream {
	s := &stream{ctx: ctx, out: make(chan Event), signal: make(chan struct{}, 1)}
	go s.forward()
	return s
}

// push queues ev without blocking.
func (s *stream) push(ev Event) {
	s.mu.Lock()
	s.buf = append(s.buf, ev)
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// forward delivers queued events in order until the EventDone.
func (s *stream) forward() {
	defer close(s.out)
	var batch []Event
	for {
		<-s.signal
		s.mu.Lock()
		batch, s.buf = s.buf, batch[:0]
		s.mu.Unlock()
		for _, ev := range batch {
			if s.deliver(ev) {
				return
			}
		}
	}
}

// deliver sends one event and reports whether it was the last.
func (s *stream) deliver(ev Event) bool {
	final := ev.Kind == EventDone
	if s.ctx.Err() == nil {
		select {
		case s.out <- ev:
			return final
		case <-s.ctx.Done():
		}
	}
	if !final {
		return false
	}
	t := time.NewTimer(finalGrace)
	defer t.Stop()
	select {
	case s.out <- ev:
	case <-t.C:
	}
	return true
}
