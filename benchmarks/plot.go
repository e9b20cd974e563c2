package benchmarks

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// xAxis chooses the x axis of the plots of rs: the request rate when the
// runs differ in rate, else the concurrency (unlimited counts as the number
// of requests, all of which are in flight at once).
func xAxis(rs []*Result) (string, func(*RunResult) (float64, bool)) {
	rates := map[Rate]bool{}
	for _, r := range rs {
		for i := range r.Runs {
			rates[r.Runs[i].RequestRate] = true
		}
	}
	if len(rates) > 1 {
		return "request rate (req/s; inf not drawn)", func(r *RunResult) (float64, bool) {
			return float64(r.RequestRate), !r.RequestRate.IsInf()
		}
	}
	return "concurrency (requests in flight at most)", func(r *RunResult) (float64, bool) {
		if r.Concurrency == 0 {
			return float64(r.NumRequests), true
		}
		return float64(r.Concurrency), true
	}
}

// series is one line of a plot: a value of every run against the x axis.
type series struct {
	name  string
	value func(*RunResult) float64
}

// WritePlots draws PNG plots of the results into dir (created if needed):
// latency.png (end-to-end latency percentiles), ttft.png (TTFT percentiles
// and the mean TTFT of stages 2–4) and throughput.png (output tokens/s and
// images/s), each against the concurrency or the request rate, one line
// per result and metric. It returns the paths written.
func WritePlots(dir string, rs ...*Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	xlabel, x := xAxis(rs)
	pct := func(f func(*RunResult) Stats, p func(Stats) float64) func(*RunResult) float64 {
		return func(r *RunResult) float64 { return p(f(r)) }
	}
	e2e := func(r *RunResult) Stats { return r.E2E }
	ttft := func(r *RunResult) Stats { return r.TTFT }
	p50, p90, p99 := func(s Stats) float64 { return s.Median }, func(s Stats) float64 { return s.P90 }, func(s Stats) float64 { return s.P99 }
	figs := []struct {
		file, title, ylabel string
		lines               []series
	}{
		{"latency.png", "End-to-end latency (whole chain)", "latency (ms)", []series{
			{"e2e p50", pct(e2e, p50)}, {"e2e p90", pct(e2e, p90)}, {"e2e p99", pct(e2e, p99)},
		}},
		{"ttft.png", "Time to first token", "latency (ms)", []series{
			{"TTFT p50", pct(ttft, p50)}, {"TTFT p99", pct(ttft, p99)}, {"stage 2-4 TTFT mean", laterStageTTFT},
		}},
		{"throughput.png", "Throughput", "per second", []series{
			{"output tok/s", func(r *RunResult) float64 { return r.OutputTokenThroughput }},
			{"images/s ×100", func(r *RunResult) float64 { return 100 * r.ImagesPerS }},
		}},
	}
	var paths []string
	for _, f := range figs {
		p := plot.New()
		p.Title.Text = f.title
		p.X.Label.Text = xlabel
		p.Y.Label.Text = f.ylabel
		p.Legend.Top = true
		var args []any
		for _, r := range rs {
			for _, s := range f.lines {
				var xys plotter.XYs
				for i := range r.Runs {
					xv, ok := x(&r.Runs[i])
					if yv := s.value(&r.Runs[i]); ok && r.Runs[i].Completed > 0 && !math.IsNaN(yv) {
						xys = append(xys, plotter.XY{X: xv, Y: yv})
					}
				}
				if len(xys) == 0 {
					continue
				}
				name := s.name
				if len(rs) > 1 || r.Label != "" {
					name = fmt.Sprintf("%s: %s", r.Label, s.name)
				}
				args = append(args, name, xys)
			}
		}
		if len(args) == 0 {
			return paths, fmt.Errorf("%w: nothing to plot: no run completed a request", ErrConfig)
		}
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return paths, err
		}
		p.Y.Min, p.Y.Max = 0, 1.4*p.Y.Max // from zero, with room for the legend
		path := filepath.Join(dir, f.file)
		if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// laterStageTTFT is the mean TTFT of stages 2–4 weighted by their samples;
// NaN when no later stage ran. The prefix cache shows here: the image
// prefix of these stages is already computed.
func laterStageTTFT(r *RunResult) float64 {
	var sum float64
	n := 0
	for _, s := range r.Stages {
		if s.Stage >= 2 {
			sum += s.TTFT.Mean * float64(s.TTFT.Count)
			n += s.TTFT.Count
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}
