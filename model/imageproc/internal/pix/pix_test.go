package pix

import (
	"sync/atomic"
	"testing"
)

func TestParallelRowsCoversEachRowOnce(t *testing.T) {
	for _, n := range []int{0, 1, 31, 32, 100, 1001} {
		seen := make([]atomic.Int32, n)
		ParallelRows(n, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				seen[i].Add(1)
			}
		})
		for i := range seen {
			if v := seen[i].Load(); v != 1 {
				t.Fatalf("n=%d: row %d visited %d times", n, i, v)
			}
		}
	}
}

func TestNewRGBIsOpaque(t *testing.T) {
	m := NewRGB(3, 2)
	if m.Rect.Dx() != 3 || m.Rect.Dy() != 2 {
		t.Fatalf("rect %v", m.Rect)
	}
	for i := 0; i < len(m.Pix); i += 4 {
		if m.Pix[i] != 0 || m.Pix[i+3] != 0xff {
			t.Fatalf("pixel %d = %v", i/4, m.Pix[i:i+4])
		}
	}
}
