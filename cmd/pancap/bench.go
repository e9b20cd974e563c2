package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pancap-serve/pancap/benchmarks"
	"github.com/pancap-serve/pancap/client"
)

// benchFlags are the flags of `pancap bench`.
type benchFlags struct {
	dialFlags
	numRequests, perConcurrency, concurrency, warmup, stages, maxFailures int
	requestRate, sweepConc, sweepRates, images, synthetic                 string
	outputLens, slo, out, plots, label, metricsURL                        string
	burstiness, repeatRatio, stopLatencyMS                                float64
	seed                                                                  uint64
	ignoreEOS                                                             bool
	maxDuration                                                           time.Duration
}

// errUsage is wrapped by the errors about bad bench flags.
var errUsage = errors.New("usage")

func newBenchCmd() *cobra.Command {
	fl := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test a running server and report vLLM-style and chain metrics",
		Long: "bench sends StreamCaption requests to the server at --addr and measures TTFT, TPOT, ITL,\n" +
			"end-to-end latency, throughput and goodput with vLLM's definitions, plus per-stage chain\n" +
			"metrics, prefix-cache hits and vision-encoder runs. It prints a table, writes a JSON result\n" +
			"(--out, schema in benchmarks/README.md) and PNG plots (--plots). Load: every request at once\n" +
			"(--request-rate inf), Poisson or Gamma arrivals (--request-rate R --burstiness B), a closed\n" +
			"loop (--concurrency C), or a sweep (--sweep-concurrency / --sweep-request-rate) that stops\n" +
			"once p99 end-to-end latency passes --stop-latency-ms. A server that stops answering ends the\n" +
			"run with partial results. `pancap bench compare` compares two result files.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, fl)
		},
	}
	f := cmd.Flags()
	fl.dialFlags.register(f)
	f.IntVar(&fl.numRequests, "num-requests", 100, "measured requests per load point")
	f.IntVar(&fl.perConcurrency, "requests-per-concurrency", 0, "size each point to this many waves: N × its concurrency requests (0: --num-requests)")
	f.IntVar(&fl.concurrency, "concurrency", 0, "requests in flight at most (default unlimited); with --request-rate inf a closed loop")
	f.StringVar(&fl.requestRate, "request-rate", "inf", "arrivals per second, or inf to send every request at once")
	f.Float64Var(&fl.burstiness, "burstiness", 1, "Gamma shape of the arrival gaps: 1 Poisson, <1 burstier, >1 more regular")
	f.Uint64Var(&fl.seed, "seed", 0, "seed of the arrivals, output lengths and repeated images")
	f.IntVar(&fl.warmup, "warmup", 0, "requests sent before measuring, not counted")
	f.StringVar(&fl.sweepConc, "sweep-concurrency", "", "run one point per concurrency, e.g. 1,2,4,8")
	f.StringVar(&fl.sweepRates, "sweep-request-rate", "", "run one point per request rate, e.g. 0.5,1,2,inf")
	f.Float64Var(&fl.stopLatencyMS, "stop-latency-ms", 0, "stop a sweep once p99 end-to-end latency passes this (0: never)")
	f.StringVar(&fl.images, "images", "", "folder of JPEG/PNG/GIF/WebP images to send")
	f.StringVar(&fl.synthetic, "synthetic", "", "draw synthetic images of these sizes, e.g. 640x480,1000x667 (default 1000x667 without --images)")
	f.IntVar(&fl.stages, "stages", 4, "run chain stages 1..N (1-4)")
	f.StringVar(&fl.outputLens, "output-lens", benchmarks.DefaultOutputLens.String(), "tokens per stage (one value for all), optionally ~P% for a seeded uniform ±P% spread")
	f.BoolVar(&fl.ignoreEOS, "ignore-eos", true, "generate exactly --output-lens tokens per stage")
	f.Float64Var(&fl.repeatRatio, "repeat-ratio", 0, "fraction of requests that resend an earlier image (exercises the image and prefix caches)")
	f.StringVar(&fl.slo, "slo", "", "goodput objective, e.g. ttft:500,tpot:50,e2e:20000 (milliseconds)")
	f.StringVar(&fl.out, "out", "", "write the JSON result to this file")
	f.StringVar(&fl.plots, "plots", "", "write PNG plots into this folder")
	f.StringVar(&fl.label, "label", "", "name of this run in the result and comparisons")
	f.StringVar(&fl.metricsURL, "metrics-url", "", "the server's Prometheus /metrics URL, scraped around every point to record what the server counted (with --auth-token's bearer token)")
	f.DurationVar(&fl.maxDuration, "max-duration", 0, "stop the whole benchmark after this long, keeping partial results (0: no limit)")
	f.IntVar(&fl.maxFailures, "max-consecutive-failures", 10, "stop after this many failed requests in a row (0: never)")
	envUsage(f)
	cmd.AddCommand(newBenchCompareCmd())
	return cmd
}

// config turns the flags into a benchmark configuration; every error wraps
// errUsage.
func (fl *benchFlags) config(fs *pflag.FlagSet) (benchmarks.Config, error) {
	cfg := benchmarks.Config{
		NumRequests: fl.numRequests, RequestsPerConcurrency: fl.perConcurrency, Concurrency: fl.concurrency, Burstiness: fl.burstiness, Seed: fl.seed,
		Warmup: fl.warmup, Stages: fl.stages, IgnoreEOS: fl.ignoreEOS, RepeatRatio: fl.repeatRatio,
		StopLatency:    time.Duration(fl.stopLatencyMS * float64(time.Millisecond)),
		RequestTimeout: fl.timeout, MaxDuration: fl.maxDuration, MaxConsecutiveFailures: fl.maxFailures,
		MetricsURL: fl.metricsURL, MetricsToken: fl.token,
	}
	usage := func(err error) (benchmarks.Config, error) {
		return cfg, fmt.Errorf("%w: %w (see pancap bench --help)", errUsage, err)
	}
	if fs.Changed("concurrency") && fl.concurrency < 1 {
		return usage(fmt.Errorf("--concurrency must be at least 1 (leave it out for no limit), got %d", fl.concurrency))
	}
	if fl.images != "" && fl.synthetic != "" {
		return usage(errors.New("give --images or --synthetic, not both"))
	}
	var err error
	if cfg.RequestRate, err = benchmarks.ParseRate(fl.requestRate); err != nil {
		return usage(err)
	}
	if cfg.OutputLens, err = benchmarks.ParseLenDist(fl.outputLens); err != nil {
		return usage(err)
	}
	if fl.slo != "" {
		if cfg.SLO, err = benchmarks.ParseSLO(fl.slo); err != nil {
			return usage(err)
		}
	}
	if fl.sweepConc != "" {
		if cfg.SweepConcurrency, err = benchmarks.ParseInts(fl.sweepConc); err != nil {
			return usage(err)
		}
	}
	if fl.sweepRates != "" {
		if cfg.SweepRates, err = benchmarks.ParseRates(fl.sweepRates); err != nil {
			return usage(err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return usage(err)
	}
	return cfg, nil
}

// workload loads or draws the images.
func (fl *benchFlags) workload(seed uint64) ([]benchmarks.Image, error) {
	if fl.images != "" {
		return benchmarks.LoadImages(fl.images)
	}
	spec := fl.synthetic
	if spec == "" {
		spec = "1000x667"
	}
	sizes, err := benchmarks.ParseSizes(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return benchmarks.Synthetic(sizes, seed)
}

// flagValues records every flag's value for the result file; the token is
// redacted.
func flagValues(fs *pflag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) {
		switch {
		case f.Name == "help":
		case f.Name == "auth-token" && f.Value.String() != "":
			m[f.Name] = "(redacted)"
		default:
			m[f.Name] = f.Value.String()
		}
	})
	return m
}

func runBench(cmd *cobra.Command, fl *benchFlags) error {
	cfg, err := fl.config(cmd.Flags())
	if err != nil {
		return err
	}
	images, err := fl.workload(fl.seed)
	if err != nil {
		return err
	}
	// A load generator does not retry: a retried call would hide the
	// server's UNAVAILABLE and distort the latencies it measures.
	c, err := fl.dial(client.WithRetry(1, 0, 0))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := cmd.Context()
	infoCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	info, err := c.ModelInfo(infoCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("bench: GetModelInfo on %s: %w", fl.addr, rpcError(err))
	}
	res := &benchmarks.Result{
		SchemaVersion: benchmarks.SchemaVersion, Label: fl.label, StartedAt: time.Now().UTC(),
		Tool: benchmarks.NewTool(), Server: benchmarks.NewServer(fl.addr, info),
		Flags: flagValues(cmd.Flags()), Workload: benchmarks.NewWorkload(&cfg, images), SLO: cfg.SLO,
	}
	bar := newProgress(cmd.ErrOrStderr())
	cfg.Progress = func(p benchmarks.Progress) {
		if p.Done == p.Total && p.Total > 0 { // one line per finished point, also in logs
			bar.Clear()
			fmt.Fprintf(cmd.ErrOrStderr(), "bench: %s: %d requests, %d failed\n", p.Point, p.Total, p.Failed)
			return
		}
		bar.Set("%s %d/%d %s, %d failed", progressBar(p.Done, p.Total, 30), p.Done, p.Total, p.Point, p.Failed)
	}
	runs, note, runErr := benchmarks.Run(ctx, c, images, cfg)
	bar.Close()
	if runErr != nil && !errors.Is(runErr, benchmarks.ErrStopped) {
		return runErr
	}
	res.Runs, res.StopReason = runs, note
	if runErr != nil {
		res.Partial, res.StopReason = true, runErr.Error()
	}
	if err := benchmarks.WriteTable(cmd.OutOrStdout(), res); err != nil {
		return err
	}
	outErr := writeOutputs(cmd.ErrOrStderr(), res, fl.out, fl.plots)
	if runErr == nil {
		return outErr
	}
	where := "printed above"
	if outErr != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "bench: %v\n", outErr) // the stop is the news
	} else if fl.out != "" {
		where = "written to " + fl.out
	}
	return fmt.Errorf("bench: %w; partial results %s", runErr, where)
}

// writeOutputs writes the JSON result and the plots when asked for.
func writeOutputs(log io.Writer, res *benchmarks.Result, out, plots string) error {
	if out != "" {
		if err := benchmarks.WriteJSON(out, res); err != nil {
			return err
		}
		fmt.Fprintf(log, "result: %s\n", out)
	}
	if plots != "" {
		paths, err := benchmarks.WritePlots(plots, res)
		if err != nil {
			return fmt.Errorf("plots: %w", err)
		}
		fmt.Fprintf(log, "plots: %s\n", strings.Join(paths, ", "))
	}
	return nil
}

// progressBar draws done of total as a bar of width cells.
func progressBar(done, total, width int) string {
	n := 0
	if total > 0 {
		n = min(width, done*width/total)
	}
	return "[" + strings.Repeat("█", n) + strings.Repeat("·", width-n) + "]"
}

// newBenchCompareCmd compares two result files.
func newBenchCompareCmd() *cobra.Command {
	var out, plots string
	cmd := &cobra.Command{
		Use:   "compare A.json B.json",
		Short: "Compare two bench results (e.g. chain reuse over baseline) as markdown",
		Long: "compare writes a markdown table of A over B for every load point both ran: output\n" +
			"tokens/s, images/s, the mean TTFT of stages 2-4 and p99 end-to-end latency, with the\n" +
			"ratio A/B. With --plots it also draws both results in the same PNG plots.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := benchmarks.ReadJSON(args[0])
			if err != nil {
				return err
			}
			b, err := benchmarks.ReadJSON(args[1])
			if err != nil {
				return err
			}
			var md strings.Builder
			if err := benchmarks.Compare(&md, a, b); err != nil {
				return err
			}
			if out == "" {
				_, err = io.WriteString(cmd.OutOrStdout(), md.String())
			} else {
				err = os.WriteFile(out, []byte(md.String()), 0o644)
			}
			if err != nil {
				return err
			}
			if plots != "" {
				paths, err := benchmarks.WritePlots(plots, a, b)
				if err != nil {
					return fmt.Errorf("plots: %w", err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "plots: %s\n", strings.Join(paths, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the markdown to this file (default stdout)")
	cmd.Flags().StringVar(&plots, "plots", "", "draw both results into PNG plots in this folder")
	return cmd
}
