//go:build cgo

// Command bench-kernels measures the CPU matrix-product kernels of
// kernels/cpu/linalg against the machine's own limits, measured in the same
// run: a STREAM-like read bandwidth test and, when built with the openblas
// tag, OpenBLAS sgemm on the same shapes. It prints a Markdown table and the
// ratios that issue 6 targets:
//
//	go run -tags openblas ./tools/bench-kernels
//
// Every time is the best of several runs (the machine may be shared), the
// same rule for our kernels and the yardsticks, so the ratios compare.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"time"

	"github.com/pancap-serve/pancap/kernels/cpu/linalg"
	"github.com/pancap-serve/pancap/kernels/cpu/membw"
)

// shape is one product out[m×n] = x[m×k] · w[n×k]ᵀ.
type shape struct {
	name    string
	m, n, k int
}

// The bench preset's products: prefill over the 576 image tokens (attention
// projections, MLP up), and batched decode at 1, 4 and 16 sequences.
var shapes = []shape{
	{"prefill qkvo", 576, 1024, 1024},
	{"prefill mlp-up", 512, 2816, 1024},
	{"prefill mlp-down", 512, 1024, 2816},
	{"decode b1", 1, 1024, 1024},
	{"decode b4", 4, 1024, 1024},
	{"decode b16", 16, 1024, 1024},
	{"decode b1 mlp-up", 1, 2816, 1024},
	{"decode b16 mlp-up", 16, 2816, 1024},
}

// dtype is a weight element type of the kernels.
type dtype struct {
	name string
	size int
}

var dtypes = []dtype{{"fp32", 4}, {"bf16", 2}, {"fp16", 2}}

// sgemm is OpenBLAS's sgemm (out = x · wᵀ) when built with -tags openblas.
var sgemm func(out, x, w []float32, m, n, k int)

// ringBytes is the weight footprint a decode benchmark cycles through, so
// that weights come from memory as a model's do (well above the L3).
const ringBytes = 128 << 20

func main() {
	minTime := flag.Duration("time", 300*time.Millisecond, "minimum measuring time per case")
	flag.Parse()
	if err := run(os.Stdout, *minTime); err != nil {
		fmt.Fprintln(os.Stderr, "bench-kernels:", err)
		os.Exit(1)
	}
}

// best runs the functions in interleaved rounds (each once per round, at
// least 3 rounds) until minTime per function has passed, and returns each
// one's shortest run: noise from other work on the machine then falls on
// all of them alike.
func best(minTime time.Duration, fs ...func(i int)) []time.Duration {
	for _, f := range fs {
		f(0) // warm up
	}
	bestD := make([]time.Duration, len(fs))
	for i := range bestD {
		bestD[i] = time.Duration(1<<63 - 1)
	}
	start := time.Now()
	for i := 1; i < 4 || time.Since(start) < minTime*time.Duration(len(fs)); i++ {
		for j, f := range fs {
			t := time.Now()
			f(i)
			bestD[j] = min(bestD[j], time.Since(t))
		}
	}
	return bestD
}

// result is one measured case.
type result struct {
	shape     shape
	dt        string
	sec       float64 // best time per product
	gflops    float64
	gbs       float64 // weight + activation + output bytes per second
	weightGBs float64 // weight bytes per second
}

// bench is one case ready to run: f(i) runs the product once (on the
// i-th copy of the weights).
type bench struct {
	dt     string
	wBytes int
	f      func(i int)
}

// ringOf is how many copies of wBytes of weights shape s cycles through.
func ringOf(s shape, wBytes int) int {
	if s.m <= 16 {
		return max(1, ringBytes/wBytes)
	}
	return 1
}

func ours(s shape, dt dtype, rng *rand.Rand) bench {
	wBytes := s.n * s.k * dt.size
	ring := ringOf(s, wBytes)
	x := randF32(rng, s.m*s.k)
	out := make([]float32, s.m*s.n)
	b := bench{dt: dt.name, wBytes: wBytes}
	if dt.size == 4 {
		ws := make([][]float32, ring)
		for i := range ws {
			ws[i] = randF32(rng, s.n*s.k)
		}
		b.f = func(i int) { linalg.MatMulF32(out, x, ws[i%ring], s.m, s.n, s.k) }
		return b
	}
	ws := make([][]uint16, ring)
	for i := range ws {
		ws[i] = randU16(rng, s.n*s.k, dt.name)
	}
	mm := linalg.MatMulBF16
	if dt.name == "fp16" {
		mm = linalg.MatMulF16
	}
	b.f = func(i int) { mm(out, x, ws[i%ring], s.m, s.n, s.k) }
	return b
}

func newResult(s shape, dt string, sec float64, wBytes int) result {
	all := wBytes + 4*s.m*(s.k+s.n)
	return result{shape: s, dt: dt, sec: sec, gflops: 2 * float64(s.m*s.n*s.k) / sec / 1e9,
		gbs: float64(all) / sec / 1e9, weightGBs: float64(wBytes) / sec / 1e9}
}

func openBLAS(s shape, rng *rand.Rand) bench {
	wBytes := s.n * s.k * 4
	ring := ringOf(s, wBytes)
	x, out := randF32(rng, s.m*s.k), make([]float32, s.m*s.n)
	ws := make([][]float32, ring)
	for i := range ws {
		ws[i] = randF32(rng, s.n*s.k)
	}
	return bench{dt: "OpenBLAS sgemm", wBytes: wBytes, f: func(i int) { sgemm(out, x, ws[i%ring], s.m, s.n, s.k) }}
}

func randF32(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// randU16 draws normal values as bf16 or fp16 bit patterns.
func randU16(rng *rand.Rand, n int, dt string) []uint16 {
	v := make([]uint16, n)
	for i := range v {
		f := float32(rng.NormFloat64() * 0.05)
		if dt == "bf16" {
			v[i] = bf16(f)
		} else {
			v[i] = f16(f)
		}
	}
	return v
}

func bf16(f float32) uint16 {
	b := math.Float32bits(f)
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// f16 rounds a small normal float (|f| < 2, here) to half precision.
func f16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	man := b & 0x7fffff
	h := uint32(exp)<<10 | man>>13
	if man&0x1fff > 0x1000 || man&0x1fff == 0x1000 && h&1 == 1 {
		h++
	}
	return sign | uint16(h)
}

func run(w io.Writer, minTime time.Duration) error {
	rng := rand.New(rand.NewPCG(1, 2))
	fmt.Fprintf(w, "Kernel %s, %d workers, %s/%s, GOMAXPROCS %d, %s\n\n", linalg.Kernel(), linalg.Workers(),
		runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	probe := membw.NewProbe(membw.Bytes)
	bw := probe.Read(minTime)
	blas := map[string]result{}
	mine := map[string]result{}
	type line struct {
		r   result
		ref *result
	}
	var lines []line
	for _, s := range shapes {
		var cases []bench
		if sgemm != nil {
			cases = append(cases, openBLAS(s, rng))
		}
		for _, dt := range dtypes {
			cases = append(cases, ours(s, dt, rng))
		}
		fs := make([]func(int), len(cases))
		for i, c := range cases {
			fs[i] = c.f
		}
		times := best(minTime, fs...)
		var ref *result
		for i, c := range cases {
			r := newResult(s, c.dt, times[i].Seconds(), c.wBytes)
			if sgemm != nil && i == 0 {
				blas[s.name] = r
				ref = &r
				lines = append(lines, line{r: r})
				continue
			}
			mine[s.name+"/"+c.dt] = r
			lines = append(lines, line{r: r, ref: ref})
		}
		runtime.GC() // drop this shape's weight rings
	}
	bw = max(bw, probe.Read(minTime)) // and again at the end: the better of the two
	fmt.Fprintf(w, "Read bandwidth (STREAM-like, %d workers × 8 streams over 512 MiB, best of two runs): **%.1f GB/s**\n\n",
		linalg.Workers(), bw/1e9)
	fmt.Fprintln(w, "| shape | m×n×k | weights | ms | GFLOP/s | GB/s (all) | weight GB/s | vs sgemm | vs read BW |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|")
	for _, l := range lines {
		row(w, l.r, l.ref, bw)
	}
	fmt.Fprintln(w)
	targets(w, mine, blas, bw)
	return nil
}

func row(w io.Writer, r result, ref *result, bw float64) {
	vs := "—"
	if ref != nil {
		vs = fmt.Sprintf("%.2f×", r.gflops/ref.gflops)
	}
	fmt.Fprintf(w, "| %s | %d×%d×%d | %s | %.3f | %.1f | %.1f | %.1f | %s | %.2f |\n", r.shape.name,
		r.shape.m, r.shape.n, r.shape.k, r.dt, r.sec*1e3, r.gflops, r.gbs, r.weightGBs, vs, r.weightGBs*1e9/bw)
}

// targets prints the ratios, each with its goal and verdict.
func targets(w io.Writer, mine, blas map[string]result, bw float64) {
	type line struct {
		name        string
		got, target float64
	}
	var lines []line
	for _, s := range shapes {
		if s.m < 128 {
			continue
		}
		if b, ok := blas[s.name]; ok {
			lines = append(lines,
				line{fmt.Sprintf("%s fp32 / OpenBLAS sgemm", s.name), mine[s.name+"/fp32"].gflops / b.gflops, 0.8},
				line{fmt.Sprintf("%s bf16 / OpenBLAS sgemm (2× applies with AVX512-BF16/AMX only)", s.name),
					mine[s.name+"/bf16"].gflops / b.gflops, 0.8})
		}
	}
	for _, pair := range [][2]string{{"decode b1", "decode b16"}, {"decode b1 mlp-up", "decode b16 mlp-up"}} {
		one, sixteen := mine[pair[0]+"/bf16"], mine[pair[1]+"/bf16"]
		lines = append(lines,
			line{pair[0] + " bf16: weight bytes / time vs read bandwidth", one.weightGBs * 1e9 / bw, 0.7},
			line{pair[1] + " vs " + pair[0] + " bf16: rows per second", (16 / sixteen.sec) / (1 / one.sec), 5})
	}
	fmt.Fprintln(w, "| target | measured | goal | met |")
	fmt.Fprintln(w, "|---|---:|---:|---|")
	for _, l := range lines {
		met := "yes"
		if l.got < l.target {
			met = "**no**"
		}
		fmt.Fprintf(w, "| %s | %.2f | ≥ %.1f | %s |\n", l.name, l.got, l.target, met)
	}
	if len(blas) == 0 {
		fmt.Fprintln(w, "\n(built without -tags openblas: no sgemm yardstick)")
	}
}
