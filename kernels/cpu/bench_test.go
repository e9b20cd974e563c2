package cpu

import (
	"testing"

	"github.com/pancap-serve/pancap/kernels"
)

// BenchmarkPagedAttentionPrefill is one layer's attention of a 640-token
// prompt with the bench preset's geometry (16 heads × 64).
func BenchmarkPagedAttentionPrefill(b *testing.B) {
	benchPaged(b, 1, 640, 0)
}

// BenchmarkPagedAttentionDecode is one layer's attention of 8 sequences
// decoding at position 1000.
func BenchmarkPagedAttentionDecode(b *testing.B) {
	benchPaged(b, 8, 1, 1000)
}

// BenchmarkPagedAttentionDecode1 is one layer's attention of one sequence
// decoding at position 1000.
func BenchmarkPagedAttentionDecode1(b *testing.B) {
	benchPaged(b, 1, 1, 1000)
}

// benchPaged runs seqs sequences of rows query rows at position pos over a
// float32 and a float16 KV cache (sub-benchmarks named by the dtype) and
// reports GB/s (each sequence's keys and values counted once, the bytes a
// decode step must read) and GFLOP/s (scores and weighted sums).
func benchPaged(b *testing.B, seqs, rows, pos int) {
	for _, dt := range []kernels.DType{kernels.F32, kernels.F16} {
		b.Run(dt.String(), func(b *testing.B) { benchPagedOf(b, seqs, rows, pos, dt) })
	}
}

func benchPagedOf(b *testing.B, seqs, rows, pos int, dt kernels.DType) {
	be := New(0)
	defer be.Close()
	const heads, hd, bs = 16, 64, 16
	width := heads * hd
	perSeq := (pos + rows + bs - 1) / bs
	kc, err := be.AllocCache(seqs*perSeq*bs*width, dt)
	if err != nil {
		b.Fatal(err)
	}
	vc, _ := be.AllocCache(seqs*perSeq*bs*width, dt)
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
	sec := b.Elapsed().Seconds() / float64(b.N)
	seen := rows*pos + rows*(rows+1)/2 // positions seen, over the rows
	b.ReportMetric(float64(seqs*(pos+rows)*width*2*dt.Size())/sec/1e9, "GB/s")
	b.ReportMetric(float64(seqs*seen*width*4)/sec/1e9, "GFLOP/s")
}
