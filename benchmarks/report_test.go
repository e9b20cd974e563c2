package benchmarks

import (
	"bytes"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sweepResult is a two-point concurrency sweep made of hand-made requests;
// scale stretches every time.
func sweepResult(label string, scale time.Duration) *Result {
	r := &Result{SchemaVersion: SchemaVersion, Label: label, Server: Server{Model: "bench", RandomWeights: true}}
	for _, c := range []int{1, 4} {
		tls := []Timeline{handmade(), handmade()}
		for i := range tls {
			tls[i].E2E *= scale
			for j := range tls[i].Stages {
				st := &tls[i].Stages[j]
				st.Finished *= scale
				for k := range st.Chunks {
					st.Chunks[k].At *= scale
				}
			}
		}
		run := Aggregate(tls, time.Duration(c)*time.Second, SLO{})
		run.Concurrency, run.RequestRate, run.NumRequests = c, Inf, 2
		r.Runs = append(r.Runs, run)
	}
	return r
}

func TestWriteTable(t *testing.T) {
	r := sweepResult("x", 1)
	r.Partial, r.StopReason = true, "server gone"
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, re := range []string{`Mean TTFT \(ms\):\s+200\.00\n`, `Mean TPOT \(ms\):\s+80\.00\n`, `==== Serving Benchmark Result \(concurrency 4, rate inf\) ====`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("table lacks %s:\n%s", re, out)
		}
	}
	for _, want := range []string{
		"RANDOM weights", "concurrency 1, rate inf", "concurrency 4, rate inf",
		"2 tag", "PARTIAL RESULTS: server gone",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWritePlots(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plots")
	paths, err := WritePlots(dir, sweepResult("reuse", 1), sweepResult("baseline", 2))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("%v", paths)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width < 100 || cfg.Height < 100 {
			t.Fatalf("%s: %+v %v", p, cfg, err)
		}
	}
	if _, err := WritePlots(dir, &Result{Runs: []RunResult{{Concurrency: 1}}}); !errors.Is(err, ErrConfig) {
		t.Fatalf("nothing to plot: %v", err)
	}
}

func TestCompare(t *testing.T) {
	a, b := sweepResult("chain-reuse", 1), sweepResult("baseline", 2)
	var md bytes.Buffer
	if err := Compare(&md, a, b); err != nil {
		t.Fatal(err)
	}
	out := md.String()
	// Twice the times at the same wall time: the same throughput, half the
	// latency.
	for _, want := range []string{
		"# chain-reuse vs baseline",
		"| 1 | inf | 12.00 | 12.00 | 1.00× | 2.00 | 2.00 | 1.00× | 90.00 | 180.00 | 0.50× | 600.00 | 1200.00 | 0.50× |",
		"| 4 | inf |",
		"Random-weight model",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
	b.Runs = b.Runs[:0]
	if err := Compare(&md, a, b); !errors.Is(err, ErrConfig) {
		t.Fatalf("no shared point: %v", err)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := sweepResult("x", 1)
	r.SLO = SLO{TTFT: 250 * time.Millisecond}
	r.Workload.OutputLens = DefaultOutputLens
	path := filepath.Join(t.TempDir(), "r.json")
	if err := WriteJSON(path, r); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Label != "x" || len(back.Runs) != 2 || !back.Runs[0].RequestRate.IsInf() || back.Runs[1].TTFT.Mean != 200 ||
		back.SLO != r.SLO || back.Workload.OutputLens.String() != "150,200,60,450" || back.Runs[0].Stages[1].Name != "tag" {
		t.Fatalf("%+v", back)
	}
	raw, _ := os.ReadFile(path)
	for _, key := range []string{`"ttft_ms"`, `"tpot_ms"`, `"itl_ms"`, `"e2e_latency_ms"`, `"output_token_throughput_tps"`, `"request_rate": "inf"`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	if err := os.WriteFile(path, []byte(`{"schema_version": 99}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadJSON(path); !errors.Is(err, ErrConfig) {
		t.Fatalf("future schema: %v", err)
	}
}
