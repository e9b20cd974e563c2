package benchmarks

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Compare writes a markdown comparison of two results of the same sweep, a
// (e.g. chain reuse) over b (e.g. the baseline): for every load point both
// ran, output tokens/s, images/s (chains per second), the mean TTFT of
// stages 2–4 and the p99 end-to-end latency, each with the ratio a/b
// (above 1 is better for throughput, below 1 for latency).
func Compare(w io.Writer, a, b *Result) error {
	var s strings.Builder
	fmt.Fprintf(&s, "# %s vs %s\n\n", name(a, "a"), name(b, "b"))
	for _, r := range []struct {
		tag string
		r   *Result
	}{{"a", a}, {"b", b}} {
		fmt.Fprintf(&s, "- **%s** = `%s`: model %s (%s, %s), commit %s, started %s",
			r.tag, name(r.r, r.tag), r.r.Server.Model, r.r.Server.DType, r.r.Server.Device, short(r.r.Tool.GitCommit), r.r.StartedAt.UTC().Format("2006-01-02 15:04 UTC"))
		if r.r.Partial {
			fmt.Fprintf(&s, " — **partial results**: %s", r.r.StopReason)
		}
		s.WriteString("\n")
	}
	if a.Server.RandomWeights || b.Server.RandomWeights {
		s.WriteString("\nRandom-weight model: the hand-off lists parse empty, so the stage 2–4 prompts are shorter than on real images.\n")
	}
	s.WriteString("\n| concurrency | rate | output tok/s a | b | a/b | images/s a | b | a/b | stage 2–4 TTFT ms a | b | a/b | p99 e2e ms a | b | a/b |\n")
	s.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	matched := 0
	for i := range a.Runs {
		ra := &a.Runs[i]
		rb := findRun(b, ra)
		if rb == nil {
			continue
		}
		matched++
		conc := "unlimited"
		if ra.Concurrency > 0 {
			conc = fmt.Sprint(ra.Concurrency)
		}
		fmt.Fprintf(&s, "| %s | %v |", conc, ra.RequestRate)
		for _, v := range [][2]float64{
			{ra.OutputTokenThroughput, rb.OutputTokenThroughput},
			{ra.ImagesPerS, rb.ImagesPerS},
			{laterStageTTFT(ra), laterStageTTFT(rb)},
			{ra.E2E.P99, rb.E2E.P99},
		} {
			fmt.Fprintf(&s, " %s | %s | %s |", num(v[0]), num(v[1]), ratioText(v[0], v[1]))
		}
		s.WriteString("\n")
	}
	if matched == 0 {
		return fmt.Errorf("%w: the two results share no load point (concurrency and rate)", ErrConfig)
	}
	_, err := io.WriteString(w, s.String())
	return err
}

// findRun returns the run of r at the load point of want, or nil.
func findRun(r *Result, want *RunResult) *RunResult {
	for i := range r.Runs {
		if r.Runs[i].Concurrency == want.Concurrency && r.Runs[i].RequestRate == want.RequestRate {
			return &r.Runs[i]
		}
	}
	return nil
}

func name(r *Result, fallback string) string {
	if r.Label != "" {
		return r.Label
	}
	return fallback
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	if commit == "" {
		return "unknown"
	}
	return commit
}

// num formats a metric, "–" when it was not measured.
func num(v float64) string {
	if math.IsNaN(v) || v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// ratioText formats a/b, "–" when either was not measured.
func ratioText(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}
