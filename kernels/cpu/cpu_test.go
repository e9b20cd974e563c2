package cpu

import (
	"testing"

	"github.com/pancap-serve/pancap/kernels"

	"github.com/pancap-serve/pancap/kernels/kernelstest"
)

func TestConformance(t *testing.T) {
	for _, workers := range []int{1, 3} {
		b := New(workers)
		kernelstest.Run(t, b)
		b.Close()
	}
}

func TestNoAllocsPerMatMul(t *testing.T) {
	b := New(2)
	defer b.Close()
	raw := make([]byte, 4*200*16)
	w, err := b.LoadWeight(kernels.F32, []int{200, 16}, raw)
	if err != nil {
		t.Fatal(err)
	}
	x, out := b.Alloc(3*16), b.Alloc(3*200)
	b.MatMul(out, x, w, nil, 3) // warm the scratch
	if n := testing.AllocsPerRun(20, func() { b.MatMul(out, x, w, nil, 3) }); n != 0 {
		t.Errorf("MatMul allocates %v times per call", n)
	}
}

// panicTask panics on the items it is given.
type panicTask struct{}

func (panicTask) run(_, lo, hi int) {
	if lo > 0 {
		panic("boom")
	}
}

func TestPoolReraisesWorkerPanic(t *testing.T) {
	p := newPool(2)
	defer p.close()
	defer func() {
		if r := recover(); r == nil {
			t.Error("a worker's panic was not re-raised in the caller")
		}
	}()
	p.parallel(panicTask{}, 100, 1)
}
