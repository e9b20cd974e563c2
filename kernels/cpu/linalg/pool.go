package linalg

import (
	"fmt"
	"runtime"
	"sync"
)

// task is one parallel operation: run processes units [lo, hi) on worker w.
// Ops are structs owned by the pool and reused, so dispatching one
// allocates nothing.
type task interface {
	run(w, lo, hi int)
}

type span struct{ lo, hi int }

// pool is a fixed set of worker goroutines that live as long as the
// process. Worker 0 is the calling goroutine itself; piece i of a split
// always runs on worker i.
type pool struct {
	mu      sync.Mutex // held by the one operation using the workers
	workers int
	start   []chan span // start[i] feeds worker i+1
	wg      sync.WaitGroup
	t       task
	panics  []any // per worker: a panic to re-raise in the caller

	fn funcTask // Parallel's task
	mm gemmTask // the matrix products' task
}

var (
	thePool  *pool
	poolOnce sync.Once
)

// getPool returns the package's pool, started on first use with
// runtime.GOMAXPROCS(0) workers.
func getPool() *pool {
	poolOnce.Do(func() {
		p := &pool{workers: max(runtime.GOMAXPROCS(0), 1)}
		p.start = make([]chan span, p.workers-1)
		p.panics = make([]any, p.workers)
		p.mm.scratch = make([][]float32, p.workers)
		for i := range p.start {
			ch := make(chan span)
			p.start[i] = ch
			go p.loop(i+1, ch)
		}
		thePool = p
	})
	return thePool
}

func (p *pool) loop(w int, ch chan span) {
	for s := range ch {
		p.runOne(w, s.lo, s.hi)
		p.wg.Done()
	}
}

func (p *pool) runOne(w, lo, hi int) {
	defer func() {
		if r := recover(); r != nil {
			p.panics[w] = r
		}
	}()
	p.t.run(w, lo, hi)
}

// Workers is the number of goroutines (the caller included) that Parallel
// and the matrix products spread their work over.
func Workers() int { return getPool().workers }

// acquire takes the workers, or reports false when another operation holds
// them (a concurrent caller, or a call from inside a Parallel function); the
// caller then runs its work alone.
func (p *pool) acquire() bool { return p.mu.TryLock() }

// split runs t over units [0, n) cut into min(n, workers) contiguous pieces
// of near-equal size, piece i on worker i, and returns when all are done.
// The caller must hold p.mu.
func (p *pool) split(t task, n int) {
	c := min(n, p.workers)
	if c <= 1 {
		t.run(0, 0, n)
		return
	}
	p.t = t
	p.wg.Add(c - 1)
	for i := 1; i < c; i++ {
		p.start[i-1] <- span{i * n / c, (i + 1) * n / c}
	}
	p.runOne(0, 0, n/c)
	p.wg.Wait()
	p.t = nil
	for w, r := range p.panics[:c] {
		if r != nil {
			p.panics[w] = nil
			panic(fmt.Sprintf("linalg: worker %d: %v", w, r))
		}
	}
}

type funcTask struct{ f func(lo, hi int) }

func (t *funcTask) run(_, lo, hi int) { t.f(lo, hi) }

// Parallel calls fn over [0, n) cut into at most Workers() contiguous pieces
// [lo, hi) of near-equal size, run at the same time on the package's
// persistent worker goroutines (the caller runs the first piece), and
// returns when all are done. The pieces depend only on n and Workers().
// It allocates nothing (a closure passed as fn may, unless the caller keeps
// it). If the workers are busy — another goroutine's call, or a call made
// from inside fn — fn(0, n) runs on the caller alone. A panic in fn is
// re-raised in the caller.
func Parallel(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	p := getPool()
	if n == 1 || !p.acquire() {
		fn(0, n)
		return
	}
	defer p.mu.Unlock()
	p.fn.f = fn
	defer func() { p.fn.f = nil }()
	p.split(&p.fn, n)
}
