package benchmarks

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// WriteTable prints r as text tables, one per point, in the layout of vLLM's
// `bench serve`, followed by the chain metrics.
func WriteTable(w io.Writer, r *Result) error {
	var b strings.Builder
	if r.Server.RandomWeights {
		fmt.Fprintf(&b, "note: %s has RANDOM weights; the hand-off lists parse empty, so the stage 2–4 prompts are shorter than on real images\n", r.Server.Model)
	}
	for i := range r.Runs {
		writeRun(&b, &r.Runs[i], r.SLO)
	}
	if r.Partial {
		fmt.Fprintf(&b, "PARTIAL RESULTS: %s\n", r.StopReason)
	} else if r.StopReason != "" {
		fmt.Fprintln(&b, r.StopReason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// tableWidth is the width of the table in columns.
const tableWidth = 64

func writeRun(b *strings.Builder, r *RunResult, slo SLO) {
	row := func(name string, format string, v any) { fmt.Fprintf(b, "%-44s "+format+"\n", name+":", v) }
	section := func(title string) { fmt.Fprintf(b, "%s\n", center(title, '-')) }
	conc := "unlimited"
	if r.Concurrency > 0 {
		conc = fmt.Sprint(r.Concurrency)
	}
	fmt.Fprintf(b, "%s\n", center(fmt.Sprintf(" Serving Benchmark Result (concurrency %s, rate %v) ", conc, r.RequestRate), '='))
	row("Successful requests", "%d", r.Completed)
	row("Failed requests", "%d", r.Failed)
	for _, code := range slices.Sorted(maps.Keys(r.Errors)) {
		row("  "+code, "%d", r.Errors[code])
	}
	if r.Sent < r.NumRequests {
		row("Requests not sent", "%d", r.NumRequests-r.Sent)
	}
	row("Benchmark duration (s)", "%.2f", r.DurationS)
	row("Total input tokens", "%d", r.TotalPromptTokens)
	row("Total generated tokens", "%d", r.TotalOutputTokens)
	row("Request throughput (req/s)", "%.2f", r.RequestThroughput)
	if r.Goodput != nil {
		row("Request goodput (req/s) ["+slo.String()+"]", "%.2f", *r.Goodput)
	}
	row("Output token throughput (tok/s)", "%.2f", r.OutputTokenThroughput)
	row("Total token throughput (tok/s)", "%.2f", r.TotalTokenThroughput)
	latency := func(title, abbr string, s Stats) {
		section(title)
		row("Mean "+abbr+" (ms)", "%.2f", s.Mean)
		row("Median "+abbr+" (ms)", "%.2f", s.Median)
		row("Std "+abbr+" (ms)", "%.2f", s.Std)
		row("P90 "+abbr+" (ms)", "%.2f", s.P90)
		row("P99 "+abbr+" (ms)", "%.2f", s.P99)
	}
	latency("Time to First Token (first stage)", "TTFT", r.TTFT)
	latency("Time per Output Token (excl. 1st token)", "TPOT", r.TPOT)
	latency("Inter-token Latency (within a stage)", "ITL", r.ITL)
	latency("End-to-end Latency", "E2EL", r.E2E)
	section("Chain")
	row("Images per second", "%.2f", r.ImagesPerS)
	row("Mean chain latency (ms)", "%.2f", r.Chain.Mean)
	row("P99 chain latency (ms)", "%.2f", r.Chain.P99)
	row("Mean TTFT of all stages pooled (ms)", "%.2f", r.StageTTFT.Mean)
	row("Prefix-cache hit tokens", "%d", r.PrefixCache.CachedTokens)
	row("Prefix-cache hit ratio", "%.3f", r.PrefixCache.HitRatio)
	row("Vision-encoder runs per request", "%.2f", r.Vision.RunsPerRequest)
	row("Vision-encoder runs per distinct image", "%.2f", r.Vision.RunsPerDistinctImage)
	fmt.Fprintf(b, "%-10s %9s %9s %9s %9s %7s %9s\n", "stage", "TTFT ms", "P99 TTFT", "TPOT ms", "srv 1st", "tokens", "cached")
	for _, s := range r.Stages {
		fmt.Fprintf(b, "%-10s %9.2f %9.2f %9.2f %9.2f %7.1f %9d\n", fmt.Sprintf("%d %s", s.Stage, s.Name),
			s.TTFT.Mean, s.TTFT.P99, s.TPOT.Mean, s.ServerFirstToken.Mean, s.Tokens.Mean, s.CachedTokens)
	}
	fmt.Fprintln(b, "(stage TTFT: from the request's start for stage 1, from the previous stage's end for stages 2–4;")
	fmt.Fprintln(b, " srv 1st: the server's own stage start → first token; means except P99)")
	if spec := SpecStages(r.ServerMetrics); len(spec) > 0 {
		section("Speculative decoding")
		fmt.Fprintf(b, "%-10s %9s %11s %9s %10s %10s\n", "stage", "verifies", "draft tok", "accepted", "accept %", "tok/verify")
		for _, s := range spec {
			fmt.Fprintf(b, "%-10s %9.0f %11.0f %9.0f %10.1f %10.2f\n", s.Stage, s.Drafts, s.DraftTokens, s.Accepted,
				100*s.AcceptanceRate(), s.TokensPerStep())
		}
	}
	if len(r.ServerMetrics) > 0 || r.ServerMetricsError != "" {
		section("Server /metrics during this point")
		for _, k := range slices.Sorted(maps.Keys(r.ServerMetrics)) {
			row(k, "%.6g", r.ServerMetrics[k])
		}
		if r.ServerMetricsError != "" {
			row("scrape failed", "%s", r.ServerMetricsError)
		}
	}
	fmt.Fprintf(b, "%s\n", strings.Repeat("=", tableWidth))
}

// center pads title with fill to tableWidth columns.
func center(title string, fill rune) string {
	n := tableWidth - len([]rune(title))
	if n <= 0 {
		return title
	}
	return strings.Repeat(string(fill), n/2) + title + strings.Repeat(string(fill), n-n/2)
}
