package cpu

import (
	"math/rand/v2"
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
	// Decode reads each key and value once, so its calls cycle through
	// ring sets of sequences whose caches together exceed the last-level
	// cache, as a model's layers do; prefill rereads its cache and keeps one.
	ring := 1
	if rows == 1 {
		ring = max(1, (96<<20)/(2*seqs*perSeq*bs*width*dt.Size()))
	}
	blocks := ring * seqs * perSeq
	kc, err := be.AllocCache(blocks*bs*width, dt)
	if err != nil {
		b.Fatal(err)
	}
	vc, _ := be.AllocCache(blocks*bs*width, dt)
	q, out := be.Alloc(seqs*rows*width), be.Alloc(seqs*rows*width)
	// Every element is written: a never-written cache reads the kernel's
	// shared zero page, which sits in L1 and hides the memory traffic of a
	// real one (decode ran 2–3× faster on it).
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []kernels.Buffer{kc, vc} {
		writeRandom(be, rng, c, blocks*bs, width)
	}
	be.Write(q, 0, randomVec(rng, seqs*rows*width))
	order := rng.Perm(blocks) // blocks scattered over the pool, as a server's are
	sets := make([][]kernels.Seq, ring)
	for r := range sets {
		for s := range seqs {
			table := make([]int32, perSeq)
			for i := range table {
				table[i] = int32(order[(r*seqs+s)*perSeq+i])
			}
			sets[r] = append(sets[r], kernels.Seq{Row: s * rows, Rows: rows, Pos: pos, Blocks: table})
		}
	}
	b.ResetTimer()
	for i := range b.N {
		be.PagedAttention(out, q, kc, vc, sets[i%ring], heads, hd, bs)
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	seen := rows*pos + rows*(rows+1)/2 // positions seen, over the rows
	b.ReportMetric(float64(seqs*(pos+rows)*width*2*dt.Size())/sec/1e9, "GB/s")
	b.ReportMetric(float64(seqs*seen*width*4)/sec/1e9, "GFLOP/s")
}

// writeRandom writes values in [-0.5, 0.5) into rows of width of a KV
// cache, through ScatterRows as the model writes one (16-bit caches round).
func writeRandom(be *Backend, rng *rand.Rand, cache kernels.Buffer, rows, width int) {
	const chunk = 256
	src := be.Alloc(chunk * width)
	idx := make([]int32, 0, chunk)
	for r0 := 0; r0 < rows; r0 += chunk {
		n := min(chunk, rows-r0)
		idx = idx[:0]
		for r := range n {
			idx = append(idx, int32(r0+r))
		}
		be.Write(src, 0, randomVec(rng, n*width))
		be.ScatterRows(cache, src, idx, width)
	}
}

// randomVec is n values in [-0.5, 0.5).
func randomVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = rng.Float32() - 0.5
	}
	return v
}
