//go:build cuda

package cuda

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pancap-serve/pancap/kernels"
)

// 13B geometry (LLaMA-2-13B): the shapes the throughput floors in
// docs/cuda.md are computed for.
const (
	hidden13B = 5120
	ffn13B    = 13824
	heads13B  = 40
	hd13B     = 128
	prefix13B = 616 // tokens of one image prefix
)

// BenchmarkMatMul times one bf16 projection per shape and reports the
// achieved rate and weight-read bandwidth (compare with 989 TFLOP/s and
// 3.35 TB/s on an H100 SXM).
func BenchmarkMatMul(b *testing.B) {
	for _, g := range []GEMM{GEMMCuBLAS, GEMMReference} {
		for _, sh := range [][3]int{
			{1, hidden13B, hidden13B}, {32, hidden13B, hidden13B}, {prefix13B, hidden13B, hidden13B},
			{1, ffn13B, hidden13B}, {32, ffn13B, hidden13B}, {prefix13B, ffn13B, hidden13B},
		} {
			m, n, k := sh[0], sh[1], sh[2]
			if g == GEMMReference && m > 32 {
				continue // minutes per iteration; not a serving path
			}
			b.Run(fmt.Sprintf("%s/m=%d/n=%d/k=%d", map[GEMM]string{GEMMCuBLAS: "cublas", GEMMReference: "ref"}[g], m, n, k), func(b *testing.B) {
				be := newBackend(b, g)
				w, err := be.LoadWeight(kernels.BF16, []int{n, k}, make([]byte, 2*n*k))
				if err != nil {
					b.Fatal(err)
				}
				x, out := be.Alloc(m*k), be.Alloc(m*n)
				be.MatMul(out, x, w, nil, m) // warm up (cuBLAS heuristics, scratch)
				be.Synchronize()
				b.ResetTimer()
				for range b.N {
					be.MatMul(out, x, w, nil, m)
				}
				be.Synchronize()
				s := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(2*float64(m*n*k)/s/1e12, "TFLOP/s")
				b.ReportMetric(float64(2*n*k)/s/1e9, "weightGB/s")
			})
		}
	}
}

// BenchmarkPagedAttention times one layer's attention at the 13B geometry,
// per KV-cache type (float32, float16): decode at batch 1 and 32 over a
// 700-token context, and the prefill of an image prefix. It reports the
// KV-read bandwidth (compare with docs/cuda.md, "Attention kernels").
func BenchmarkPagedAttention(b *testing.B) {
	const bs, ctx = 16, 700
	for _, dt := range []kernels.DType{kernels.F32, kernels.F16} {
		for _, c := range []struct {
			name       string
			batch, pos int
			rows       int
		}{{"decode/b=1", 1, ctx, 1}, {"decode/b=32", 32, ctx, 1}, {"prefill/616", 1, 0, prefix13B}} {
			b.Run(dt.String()+"/"+c.name, func(b *testing.B) {
				be := newBackend(b, GEMMReference) // attention does not use the GEMM path
				width := heads13B * hd13B
				perSeq := (c.pos + c.rows + bs - 1) / bs
				nBlocks := c.batch * perSeq
				kc, err := be.AllocCache(nBlocks*bs*width, dt)
				if err != nil {
					b.Fatal(err)
				}
				vc, err := be.AllocCache(nBlocks*bs*width, dt)
				if err != nil {
					b.Fatal(err)
				}
				r := rand.New(rand.NewPCG(1, 1))
				perm := r.Perm(nBlocks)
				seqs := make([]kernels.Seq, c.batch)
				for i := range seqs {
					blocks := make([]int32, perSeq)
					for j := range blocks {
						blocks[j] = int32(perm[i*perSeq+j])
					}
					seqs[i] = kernels.Seq{Row: i * c.rows, Rows: c.rows, Pos: c.pos, Blocks: blocks}
				}
				q, out := be.Alloc(c.batch*c.rows*width), be.Alloc(c.batch*c.rows*width)
				be.PagedAttention(out, q, kc, vc, seqs, heads13B, hd13B, bs)
				be.Synchronize()
				b.ResetTimer()
				for range b.N {
					be.PagedAttention(out, q, kc, vc, seqs, heads13B, hd13B, bs)
				}
				be.Synchronize()
				s := b.Elapsed().Seconds() / float64(b.N)
				kvBytes := 2 * float64(dt.Size()*c.batch*(c.pos+c.rows)*width)
				b.ReportMetric(kvBytes/s/1e9, "kvGB/s")
			})
		}
	}
}
