package cpu

import (
	"fmt"
	"sync"
)

// task is one parallel operation: run processes items [lo, hi) on worker w.
// Ops are structs owned by the Backend and reused, so dispatching one
// allocates nothing.
type task interface {
	run(w, lo, hi int)
}

type job struct {
	t      task
	lo, hi int
}

// pool is a fixed set of worker goroutines that live as long as the backend.
// Worker 0 is the calling goroutine itself.
type pool struct {
	workers int
	jobs    []chan job // jobs[i] feeds worker i+1
	wg      sync.WaitGroup
	panics  []any // per worker: a panic to re-raise in the caller
}

func newPool(workers int) *pool {
	p := &pool{workers: max(workers, 1)}
	p.jobs = make([]chan job, p.workers-1)
	p.panics = make([]any, p.workers)
	for i := range p.jobs {
		ch := make(chan job)
		p.jobs[i] = ch
		go p.loop(i+1, ch)
	}
	return p
}

func (p *pool) loop(w int, ch chan job) {
	for j := range ch {
		p.runOne(w, j)
		p.wg.Done()
	}
}

// runOne runs a job, keeping a panic for the caller to re-raise so that a
// bad input fails the calling step instead of the whole process.
func (p *pool) runOne(w int, j job) {
	defer func() {
		if r := recover(); r != nil {
			p.panics[w] = r
		}
	}()
	j.t.run(w, j.lo, j.hi)
}

// chunks is how many pieces n items with a minimum of grain items per piece
// are split into. It depends only on n, grain and the worker count, never on
// other arguments of an op, which keeps per-row results batch invariant.
func (p *pool) chunks(n, grain int) int {
	c := (n + grain - 1) / max(grain, 1)
	return max(min(c, p.workers), 1)
}

// parallel runs t over [0, n) split into p.chunks(n, grain) contiguous
// pieces, piece i on worker i, and returns when all are done.
func (p *pool) parallel(t task, n, grain int) {
	c := p.chunks(n, grain)
	if c == 1 {
		t.run(0, 0, n)
		return
	}
	p.wg.Add(c - 1)
	for i := 1; i < c; i++ {
		p.jobs[i-1] <- job{t: t, lo: i * n / c, hi: (i + 1) * n / c}
	}
	p.runOne(0, job{t: t, lo: 0, hi: n / c})
	p.wg.Wait()
	for w, r := range p.panics[:c] {
		if r != nil {
			clear(p.panics)
			panic(fmt.Sprintf("kernels/cpu: worker %d: %v", w, r))
		}
	}
}

func (p *pool) close() {
	for _, ch := range p.jobs {
		close(ch)
	}
	p.jobs = nil
}
