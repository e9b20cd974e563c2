package imageproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPreprocess measures the per-request cost on the 1000×667
// progressive JPEG photo at the real model's 336 pixels.
func BenchmarkPreprocess(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(photoDir, "waterview.jpg"))
	if err != nil {
		b.Skip("photo absent:", err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Preprocess(context.Background(), data, 336, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPadAndResize isolates padding and resizing the decoded photo.
func BenchmarkPadAndResize(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(photoDir, "waterview.jpg"))
	if err != nil {
		b.Skip("photo absent:", err)
	}
	img, err := decodeRGB(context.Background(), data, DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		padAndResize(context.Background(), img, 336)
	}
}

// BenchmarkDecode isolates decoding and RGB conversion of the photo.
func BenchmarkDecode(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(photoDir, "waterview.jpg"))
	if err != nil {
		b.Skip("photo absent:", err)
	}
	for b.Loop() {
		if _, err := decodeRGB(context.Background(), data, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPreprocessPNG measures the 2226×1054 PNG teaser figure.
func BenchmarkPreprocessPNG(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(photoDir, "teasor.png"))
	if err != nil {
		b.Skip("photo absent:", err)
	}
	for b.Loop() {
		if _, err := Preprocess(context.Background(), data, 336, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// worstCases are the costliest images DefaultLimits admit, one per format
// and shape, next to the plain 40 MP baseline JPEG they are compared with.
var worstCases = []struct {
	name string
	make func(t testing.TB) []byte
}{
	{"baseline-jpeg-40MP", func(t testing.TB) []byte { return baselineJPEG(t, 8000, 5000) }},
	{"scan-bomb-jpeg-dc-refine", func(testing.TB) []byte { return scanBombJPEG(8000, 5000, 40_000_000, scanDCRefine, 0) }},
	{"scan-bomb-jpeg-ac-first", func(testing.TB) []byte { return scanBombJPEG(8000, 5000, 40_000_000, scanACFirst, 0) }},
	{"scan-bomb-jpeg-ac-refine", func(testing.TB) []byte { return scanBombJPEG(8000, 5000, 40_000_000, scanACRefine63, 0) }},
	{"png-1x40M", func(t testing.TB) []byte { return thinPNG(t, 1, 40_000_000) }},
	{"png-40Mx1", func(t testing.TB) []byte { return thinPNG(t, 40_000_000, 1) }},
	{"png-2x20M", func(t testing.TB) []byte { return thinPNG(t, 2, 20_000_000) }},
	{"png-16bit-40MP", func(t testing.TB) []byte { return png16(t, 8000, 5000) }},
	{"png-interlaced-40MP", func(t testing.TB) []byte { return interlacedPNG(t, 8000, 5000) }},
	{"gif-40MP-100-frames", func(t testing.TB) []byte { return manyFramesGIF(t, 8000, 5000, 100) }},
	{"webp-lossless-40MP", func(testing.TB) []byte { return losslessWebP(16383, 2441) }},
}

// TestWorstCaseCost measures, with IMAGEPROC_WORST=1 (it takes minutes),
// the CPU time (user+sys) and peak RSS of Preprocess at size 336 on each of
// worstCases, each in a process of its own, and checks the peak against
// Header.PreprocessBytes:
//
//	IMAGEPROC_WORST=1 go test -run TestWorstCaseCost -v -timeout 30m ./model/imageproc
//
// IMAGEPROC_WORST_CASES=name,name limits it to some cases.
func TestWorstCaseCost(t *testing.T) {
	if name := os.Getenv("imageprocWorstChild"); name != "" {
		worstCaseChild(t, name)
		return
	}
	if os.Getenv("IMAGEPROC_WORST") == "" {
		t.Skip("set IMAGEPROC_WORST=1 to measure")
	}
	dir := t.TempDir()
	only := os.Getenv("IMAGEPROC_WORST_CASES")
	for _, c := range worstCases {
		if only != "" && !slices.Contains(strings.Split(only, ","), c.name) {
			continue
		}
		data := c.make(t)
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := Inspect(data, DefaultLimits())
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		cmd := exec.Command(os.Args[0], "-test.run", "^TestWorstCaseCost$", "-test.v")
		cmd.Env = append(os.Environ(), "imageprocWorstChild="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, out)
		}
		var cpu time.Duration
		var rss, base int64
		for line := range strings.Lines(string(out)) {
			if i := strings.Index(line, "worst: "); i >= 0 {
				fmt.Sscanf(line[i:], "worst: cpu %d rss %d base %d", &cpu, &rss, &base)
			}
		}
		bound := h.PreprocessBytes(336)
		t.Logf("%-26s %8d bytes %6dx%-8d cpu %6.2fs  peak RSS %5d MiB above %3d MiB (input included), PreprocessBytes %5d MiB",
			c.name, len(data), h.Width, h.Height, cpu.Seconds(), (rss-base)>>20, base>>20, bound>>20)
		// Peak RSS also holds the input and the runtime's own growth (heap
		// metadata, a few percent).
		if rss-base > bound+int64(len(data))+bound/32+4<<20 {
			t.Errorf("%s: peak RSS grew %d MiB, PreprocessBytes says %d MiB", c.name, (rss-base)>>20, bound>>20)
		}
	}
}

// worstCaseChild preprocesses the file at path once and prints its cost.
func worstCaseChild(t *testing.T, path string) {
	runtime.GC()
	base := maxRSS()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c0 := cpuTime()
	if _, err := Preprocess(context.Background(), data, 336, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("worst: cpu %d rss %d base %d\n", cpuTime()-c0, maxRSS(), base)
}

// cpuTime is the process's user+sys CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// maxRSS is the process's peak resident set so far (VmHWM, which unlike
// getrusage's ru_maxrss does not carry over the parent's peak across the
// fork and exec), in bytes.
func maxRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		panic(err)
	}
	for line := range strings.Lines(string(b)) {
		if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var n int64
			fmt.Sscan(kb, &n)
			return n << 10
		}
	}
	panic("no VmHWM in /proc/self/status")
}
