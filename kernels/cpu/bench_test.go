package cpu

import (
	"testing"

	"github.com/pancap-serve/pancap/kernels"
)

// BenchmarkPagedAttentionPrefill is one layer's attention of a 640-token
// prompt with the bench preset's geometry (16 heads × 64).
func BenchmarkPagedAttentionPrefill(b *testing.B) {
	benchPaged(b, 640, 0)
}

// BenchmarkPagedAttentionDecode is one layer's attention of 8 sequences
// decoding at position 1000.
func BenchmarkPagedAttentionDecode(b *testing.B) {
	benchPaged(b, 1, 1000)
}

func benchPaged(b *testing.B, rows, pos int) {
	be := New(0)
	defer be.Close()
	const heads, hd, bs = 16, 64, 16
	width := heads * hd
	seqs := 1
	if rows == 1 {
		seqs = 8
	}
	perSeq := (pos + rows + bs - 1) / bs
	kc, vc := be.Alloc(seqs*perSeq*bs*width), be.Alloc(seqs*perSeq*bs*width)
	q, out := be.Alloc(seqs*rows*width), be.Alloc(seqs*rows*width)
	var ss []kernels.Seq
	for s := 0; s < seqs; s++ {
		blocks := make([]int32, perSeq)
		for i := range blocks {
			blocks[i] = int32(s*perSeq + i)
		}
		ss = append(ss, kernels.Seq{Row: s * rows, Rows: rows, Pos: pos, Blocks: blocks})
	}
	b.ResetTimer()
	for range b.N {
		be.PagedAttention(out, q, kc, vc, ss, heads, hd, bs)
	}
}
