package main

import (
	"context"
	"errors"
	"image/png"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pancap-serve/pancap/batcher"
	"github.com/pancap-serve/pancap/benchmarks"
	"github.com/pancap-serve/pancap/internal/buildinfo"
	"github.com/pancap-serve/pancap/server"
)

// benchArgs are the flags of a small, fast benchmark against addr.
func benchArgs(addr string, extra ...string) []string {
	return append([]string{"bench", "--addr", addr, "--num-requests", "4", "--concurrency", "2",
		"--synthetic", "32x24", "--output-lens", "3", "--stages", "2"}, extra...)
}

func TestBenchWritesResultAndPlots(t *testing.T) {
	addr := serveBackend(t, scriptedBackend{})
	dir := t.TempDir()
	out, errOut, err := run(t, benchArgs(addr, "--out", filepath.Join(dir, "a.json"), "--plots", filepath.Join(dir, "plots"),
		"--label", "reuse", "--slo", "e2e:60000", "--warmup", "1")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if !strings.Contains(out, "Serving Benchmark Result (concurrency 2, rate inf)") || !strings.Contains(out, "Request goodput") {
		t.Fatalf("table:\n%s", out)
	}
	if !strings.Contains(errOut, "bench: warm-up: 1 requests, 0 failed\n") || !strings.Contains(errOut, "bench: concurrency 2, rate inf: 4 requests, 0 failed\n") {
		t.Fatalf("stderr:\n%s", errOut)
	}
	res, err := benchmarks.ReadJSON(filepath.Join(dir, "a.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := res.Runs[0]
	if res.Server.Model != "scripted" || res.Label != "reuse" || res.Partial || r.Completed != 4 || r.Concurrency != 2 {
		t.Fatalf("result %+v", res)
	}
	if res.Flags["num-requests"] != "4" || res.Flags["slo"] != "e2e:60000" || res.Workload.Stages != 2 || res.Workload.Warmup != 1 {
		t.Fatalf("flags %v workload %+v", res.Flags, res.Workload)
	}
	if res.Tool.Version != buildinfo.Read().Version || res.Server.Version != testServerVersion || res.StartedAt.IsZero() || len(r.Stages) != 2 || r.TTFT.Count != 4 || r.Goodput == nil {
		t.Fatalf("tool %+v server %q started %v stages %d ttft %+v", res.Tool, res.Server.Version, res.StartedAt, len(r.Stages), r.TTFT)
	}
	for _, name := range []string{"latency.png", "ttft.png", "throughput.png"} {
		f, err := os.Open(filepath.Join(dir, "plots", name))
		if err != nil {
			t.Fatal(err)
		}
		_, err = png.DecodeConfig(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	// A second run and the comparison of the two.
	if _, _, err := run(t, benchArgs(addr, "--out", filepath.Join(dir, "b.json"), "--label", "baseline")...); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(dir, "compare.md")
	if _, _, err := run(t, "bench", "compare", filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json"), "--out", md, "--plots", filepath.Join(dir, "both")); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(md)
	if err != nil || !strings.Contains(string(text), "# reuse vs baseline") || !strings.Contains(string(text), "| 2 | inf |") {
		t.Fatalf("%s %v", text, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "both", "latency.png")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "bench", "compare", filepath.Join(dir, "a.json"), filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("compare with a missing file")
	}
}

// dyingBackend answers like scriptedBackend until call dieAt, which kills
// the server and hangs until cancelled.
type dyingBackend struct {
	scriptedBackend
	calls atomic.Int32
	dieAt int32
	kill  func()
}

func (b *dyingBackend) SubmitChain(ctx context.Context, req batcher.ChainRequest) (<-chan batcher.Event, error) {
	if b.calls.Add(1) < b.dieAt {
		return b.scriptedBackend.SubmitChain(ctx, req)
	}
	go b.kill()
	ch := make(chan batcher.Event, 1)
	go func() {
		<-ctx.Done()
		ch <- batcher.Event{Kind: batcher.EventDone, Err: ctx.Err()}
		close(ch)
	}()
	return ch, nil
}

func TestBenchServerDiesMidRun(t *testing.T) {
	b := &dyingBackend{dieAt: 3}
	srv, err := server.New(server.Config{Logger: slog.New(slog.DiscardHandler)}, b)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.kill = func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no drain: cancel the calls in flight at once
		srv.Shutdown(ctx)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() { b.kill(); <-done })

	out := filepath.Join(t.TempDir(), "partial.json")
	start := time.Now()
	stdout, _, err := run(t, benchArgs(lis.Addr().String(), "--num-requests", "20", "--concurrency", "1",
		"--max-consecutive-failures", "1", "--timeout", "20s", "--out", out)...)
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("took %v", took)
	}
	if !errors.Is(err, benchmarks.ErrStopped) || !strings.Contains(err.Error(), "partial results written to "+out) {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(stdout, "PARTIAL RESULTS") {
		t.Fatalf("stdout:\n%s", stdout)
	}
	res, err := benchmarks.ReadJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	r := res.Runs[0]
	if !res.Partial || r.Completed != 2 || r.Failed != 1 || r.Errors["UNAVAILABLE"] != 1 || r.Sent != 3 {
		t.Fatalf("partial %v completed %d failed %d errors %v sent %d", res.Partial, r.Completed, r.Failed, r.Errors, r.Sent)
	}
}

func TestBenchUnreachableServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	_, _, err = run(t, benchArgs(addr, "--timeout", "2s")...)
	if err == nil || !strings.Contains(err.Error(), "GetModelInfo") {
		t.Fatalf("err %v", err)
	}
}

func TestBenchBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--concurrency", "0"},
		{"--request-rate", "-1"},
		{"--request-rate", "fast"},
		{"--slo", "ttft=5"},
		{"--slo", "ttft:5,speed:3"},
		{"--num-requests", "0"},
		{"--stages", "5"},
		{"--output-lens", "1,2,3,4,5"},
		{"--burstiness", "0"},
		{"--repeat-ratio", "2"},
		{"--sweep-concurrency", "1,0"},
		{"--sweep-concurrency", "1,2", "--sweep-request-rate", "1,2"},
		{"--images", "x", "--synthetic", "8x8"},
	} {
		// No server listens on port 1: the flags must fail before any call.
		_, _, err := run(t, append([]string{"bench", "--addr", "127.0.0.1:1"}, args...)...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "pancap bench --help") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, _, err := run(t, "bench", "--concurrency", "many"); err == nil {
		t.Error("non-numeric --concurrency accepted")
	}
	if _, _, err := run(t, "bench", "--addr", "127.0.0.1:1", "--synthetic", "8"); !errors.Is(err, errUsage) {
		t.Errorf("--synthetic 8: %v", err)
	}
}

func TestProgressBar(t *testing.T) {
	if got := progressBar(5, 10, 4); got != "[██··]" {
		t.Fatalf("%q", got)
	}
	if got := progressBar(0, 0, 2); got != "[··]" {
		t.Fatalf("%q", got)
	}
}
