package cpu

import (
	"testing"

	"github.com/pancap-serve/pancap/kernels"
	"github.com/pancap-serve/pancap/kernels/cpu/linalg"

	"github.com/pancap-serve/pancap/kernels/kernelstest"
)

func TestConformance(t *testing.T) {
	for _, workers := range []int{1, 3} {
		b := New(workers)
		kernelstest.Run(t, b)
		b.Close()
	}
}

// TestConformancePortableAttention runs the suite with the portable
// attention path, which the vector kernel otherwise replaces.
func TestConformancePortableAttention(t *testing.T) {
	defer func(f func(linalg.Attn, *[]float32) bool) { attend = f }(attend)
	attend = func(linalg.Attn, *[]float32) bool { return false }
	b := New(3)
	defer b.Close()
	kernelstest.Run(t, b)
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

func TestNoAllocsPerPagedAttention(t *testing.T) {
	b := New(2)
	defer b.Close()
	const heads, hd, bs = 6, 16, 4
	width := heads * hd
	kc, vc := b.Alloc(20*bs*width), b.Alloc(20*bs*width)
	q, out := b.Alloc(12*width), b.Alloc(12*width)
	seqs := []kernels.Seq{
		{Row: 0, Rows: 10, Pos: 30, Blocks: []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{Row: 10, Rows: 1, Pos: 20, Blocks: []int32{19, 18, 17, 16, 15, 14}},
		{Row: 11, Rows: 1, Pos: 3, Blocks: []int32{10}},
	}
	b.PagedAttention(out, q, kc, vc, seqs, heads, hd, bs) // warm the scratch
	if n := testing.AllocsPerRun(20, func() { b.PagedAttention(out, q, kc, vc, seqs, heads, hd, bs) }); n != 0 {
		t.Errorf("PagedAttention allocates %v times per call", n)
	}
}

// panicTask panics on the items it is given.
type panicTask struct{}

func (panicTask) Run(_, lo, hi int) {
	if lo > 0 {
		panic("boom")
	}
}

func TestPoolReraisesWorkerPanic(t *testing.T) {
	b := New(0)
	if b.workers < 2 {
		t.Skip("one worker")
	}
	defer func() {
		if r := recover(); r == nil {
			t.Error("a worker's panic was not re-raised in the caller")
		}
	}()
	b.parallel(panicTask{}, 100, 1)
}
