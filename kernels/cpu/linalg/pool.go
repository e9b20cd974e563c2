package linalg

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Task is one parallel operation: Run processes units [lo, hi) on worker w
// (0 ≤ w < Workers(); worker 0 is the caller), so that per-worker scratch can
// be indexed by w. Ops are structs owned by their caller and reused, so
// dispatching one allocates nothing.
type Task interface {
	Run(w, lo, hi int)
}

// spinTime is how long an idle worker, and a caller waiting for its
// workers, spin before they park. A decode step issues a parallel op every
// few tens of microseconds, and on this project's VM waking a parked thread
// (futex, then the Go scheduler), twice per op, cost ~40 µs an op
// (BenchmarkHandOff: a 1×1024×1024 bf16 product 84 µs parked, 43 µs
// spinning); spinning through the gaps of a step hands an op over at once,
// and between steps the workers park. The spin yields the processor
// (runtime.Gosched) on every turn, so that it never keeps a runnable
// goroutine (the server's) waiting; a tight spin gained a third as much.
const spinTime = 100 * time.Microsecond

// spin is spinTime, as a variable the tests can change while the workers
// run.
var spin atomic.Int64

func init() { spin.Store(int64(spinTime)) }

// pool is a fixed set of worker goroutines that live as long as the
// process. Worker 0 is the calling goroutine itself; piece i of a split
// always runs on worker i.
type pool struct {
	mu      sync.Mutex // held by the one operation using the workers
	workers int
	slots   []slot // slots[i] feeds worker i+1
	pending atomic.Int32
	caller  parker // the caller waiting for the pending pieces
	panics  []any  // per worker: a panic to re-raise in the caller

	fn funcTask // Parallel's task
	mm gemmTask // the matrix products' task
}

// slot hands one piece to a worker: the caller writes t, lo and hi, then
// bumps seq; the worker reads them after it sees seq move, and the caller
// does not write them again before the worker has reported the piece done.
type slot struct {
	t      Task
	lo, hi int
	seq    atomic.Uint64
	parker
}

// parker is the sleeping half of a spin-then-park wait. The sleeper
// announces itself (parked = true), checks its condition once more and
// blocks on wake; a waker that makes the condition true takes the
// announcement back (compare-and-swap) and sends the one token. Whoever
// wins the swap decides whether a token is sent, so none is lost and none
// is left over.
type parker struct {
	parked atomic.Bool
	wake   chan struct{}
}

func newParker() parker { return parker{wake: make(chan struct{}, 1)} }

// wait returns once ready() holds: at once, after spinning, or after
// parking until a waker's unpark. A token can come late, from the waker of
// an earlier wait (it made that condition true, lost the race to see us
// parked, and swapped our next announcement), so a woken sleeper checks its
// condition again.
func (k *parker) wait(ready func() bool) {
	start, d := time.Now(), time.Duration(spin.Load())
	for !ready() {
		if time.Since(start) < d {
			runtime.Gosched()
			continue
		}
		k.parked.Store(true)
		if ready() && k.parked.CompareAndSwap(true, false) {
			return // the condition came true before any waker saw us parked
		}
		<-k.wake
	}
}

// unpark wakes the sleeper if it has parked; call it after making its
// condition true.
func (k *parker) unpark() {
	if k.parked.Load() && k.parked.CompareAndSwap(true, false) {
		k.wake <- struct{}{}
	}
}

var (
	thePool  *pool
	poolOnce sync.Once
)

// getPool returns the package's pool, started on first use with
// runtime.GOMAXPROCS(0) workers.
func getPool() *pool {
	poolOnce.Do(func() {
		p := &pool{workers: max(runtime.GOMAXPROCS(0), 1), caller: newParker()}
		p.slots = make([]slot, p.workers-1)
		p.panics = make([]any, p.workers)
		p.mm.scratch = make([][]float32, p.workers)
		for i := range p.slots {
			p.slots[i].parker = newParker()
			go p.loop(i + 1)
		}
		thePool = p
	})
	return thePool
}

// loop is worker w's life: wait for the next piece in its slot (spinning,
// then parked), run it, report it done.
func (p *pool) loop(w int) {
	s := &p.slots[w-1]
	var seen uint64
	for {
		s.wait(func() bool { return s.seq.Load() != seen })
		seen = s.seq.Load()
		p.runOne(w, s.t, s.lo, s.hi)
		if p.pending.Add(-1) == 0 {
			p.caller.unpark()
		}
	}
}

func (p *pool) runOne(w int, t Task, lo, hi int) {
	defer func() {
		if r := recover(); r != nil {
			p.panics[w] = r
		}
	}()
	t.Run(w, lo, hi)
}

// Workers is the number of goroutines (the caller included) that Parallel,
// Run and the matrix products spread their work over.
func Workers() int { return getPool().workers }

// acquire takes the workers, or reports false when another operation holds
// them (a concurrent caller, or a call from inside a Parallel function); the
// caller then runs its work alone.
func (p *pool) acquire() bool { return p.mu.TryLock() }

// split runs t over units [0, n) cut into min(n, pieces, workers)
// contiguous pieces of near-equal size, piece i on worker i, and returns
// when all are done. The caller must hold p.mu.
func (p *pool) split(t Task, n, pieces int) {
	c := min(n, pieces, p.workers)
	if c <= 1 {
		t.Run(0, 0, n)
		return
	}
	p.pending.Store(int32(c - 1))
	for i := 1; i < c; i++ {
		s := &p.slots[i-1]
		s.t, s.lo, s.hi = t, i*n/c, (i+1)*n/c
		s.seq.Add(1)
		s.unpark()
	}
	p.runOne(0, t, 0, n/c)
	p.caller.wait(func() bool { return p.pending.Load() == 0 })
	for i := range p.slots[:c-1] {
		p.slots[i].t = nil
	}
	for w, r := range p.panics[:c] {
		if r != nil {
			clear(p.panics)
			panic(fmt.Sprintf("linalg: worker %d: %v", w, r))
		}
	}
}

// take returns the pool, locked, when n units in up to pieces pieces are
// worth splitting over its workers and the workers are free; nil when the
// caller should run them alone.
func take(n, pieces int) *pool {
	if n <= 1 || pieces <= 1 {
		return nil
	}
	if p := getPool(); p.acquire() {
		return p
	}
	return nil
}

// Run runs t over units [0, n) cut into at most pieces (and Workers())
// contiguous pieces [lo, hi) of near-equal size, piece i on worker i at the
// same time (the caller runs piece 0), and returns when all are done. The
// pieces depend only on n, pieces and Workers(). If the workers are busy —
// another goroutine's call, or a call from inside a Task — t.Run(0, 0, n)
// runs on the caller alone. A panic in a piece is re-raised in the caller.
func Run(t Task, n, pieces int) {
	if n <= 0 {
		return
	}
	p := take(n, pieces)
	if p == nil {
		t.Run(0, 0, n)
		return
	}
	defer p.mu.Unlock()
	p.split(t, n, pieces)
}

type funcTask struct{ f func(lo, hi int) }

func (t *funcTask) Run(_, lo, hi int) { t.f(lo, hi) }

// Parallel calls fn over [0, n) cut into at most Workers() contiguous pieces
// [lo, hi) of near-equal size, as Run does. It allocates nothing (a closure
// passed as fn may, unless the caller keeps it).
func Parallel(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	p := take(n, Workers())
	if p == nil {
		fn(0, n)
		return
	}
	defer p.mu.Unlock()
	p.fn.f = fn
	defer func() { p.fn.f = nil }()
	p.split(&p.fn, n, p.workers)
}
