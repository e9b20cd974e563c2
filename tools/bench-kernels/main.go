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

// best runs f until minTime has passed (at least 3 times) and returns the
// shortest run.
func best(minTime time.Duration, f func(i int)) time.Duration {
	f(0) // warm up
	bestD := time.Duration(1<<63 - 1)
	start := time.Now()
	for i := 1; i < 4 || time.Since(start) < minTime; i++ {
		t := time.Now()
		f(i)
		bestD = min(bestD, time.Since(t))
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

func measure(s shape, dt dtype, minTime time.Duration, rng *rand.Rand) result {
	wBytes := s.n * s.k * dt.size
	ring := 1
	if s.m <= 16 {
		ring = max(1, ringBytes/wBytes)
	}
	x := randF32(rng, s.m*s.k)
	out := make([]float32, s.m*s.n)
	var f func(i int)
	if dt.size == 4 {
		ws := make([][]float32, ring)
		for i := range ws {
			ws[i] = randF32(rng, s.n*s.k)
		}
		f = func(i int) { linalg.MatMulF32(out, x, ws[i%ring], s.m, s.n, s.k) }
	} else {
		ws := make([][]uint16, ring)
		for i := range ws {
			ws[i] = randU16(rng, s.n*s.k, dt.name)
		}
		mm := linalg.MatMulBF16
		if dt.name == "fp16" {
			mm = linalg.MatMulF16
		}
		f = func(i int) { mm(out, x, ws[i%ring], s.m, s.n, s.k) }
	}
	d := best(minTime, f).Seconds()
	return newResult(s, dt.name, d, wBytes)
}

func newResult(s shape, dt string, sec float64, wBytes int) result {
	all := wBytes + 4*s.m*(s.k+s.n)
	return result{shape: s, dt: dt, sec: sec, gflops: 2 * float64(s.m*s.n*s.k) / sec / 1e9,
		gbs: float64(all) / sec / 1e9, weightGBs: float64(wBytes) / sec / 1e9}
}

func measureBLAS(s shape, minTime time.Duration, rng *rand.Rand) result {
	wBytes := s.n * s.k * 4
	ring := 1
	if s.m <= 16 {
		ring = max(1, ringBytes/wBytes)
	}
	x, out := randF32(rng, s.m*s.k), make([]float32, s.m*s.n)
	ws := make([][]float32, ring)
	for i := range ws {
		ws[i] = randF32(rng, s.n*s.k)
	}
	d := best(minTime, func(i int) { sgemm(out, x, ws[i%ring], s.m, s.n, s.k) }).Seconds()
	return newResult(s, "OpenBLAS sgemm", d, wBytes)
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
	bw := readBandwidth(minTime)
	fmt.Fprintf(w, "Read bandwidth (STREAM-like sum over 512 MiB, %d workers): **%.1f GB/s**\n\n", linalg.Workers(), bw/1e9)
	fmt.Fprintln(w, "| shape | m×n×k | weights | ms | GFLOP/s | GB/s (all) | weight GB/s | vs sgemm | vs read BW |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|")
	blas := map[string]result{}
	ours := map[string]result{}
	for _, s := range shapes {
		var ref *result
		if sgemm != nil {
			r := measureBLAS(s, minTime, rng)
			blas[s.name] = r
			ref = &r
			row(w, r, nil, bw)
		}
		for _, dt := range dtypes {
			r := measure(s, dt, minTime, rng)
			ours[s.name+"/"+dt.name] = r
			row(w, r, ref, bw)
		}
	}
	fmt.Fprintln(w)
	targets(w, ours, blas, bw)
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
func targets(w io.Writer, ours, blas map[string]result, bw float64) {
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
				line{fmt.Sprintf("%s fp32 / OpenBLAS sgemm", s.name), ours[s.name+"/fp32"].gflops / b.gflops, 0.8},
				line{fmt.Sprintf("%s bf16 / OpenBLAS sgemm (2× applies with AVX512-BF16/AMX only)", s.name),
					ours[s.name+"/bf16"].gflops / b.gflops, 0.8})
		}
	}
	for _, pair := range [][2]string{{"decode b1", "decode b16"}, {"decode b1 mlp-up", "decode b16 mlp-up"}} {
		one, sixteen := ours[pair[0]+"/bf16"], ours[pair[1]+"/bf16"]
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
