package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// Streamer is the one call the load generator makes; *client.Client
// implements it.
type Streamer interface {
	StreamCaption(ctx context.Context, req *pb.CaptionRequest) iter.Seq2[*pb.CaptionEvent, error]
}

// Sentinel errors of a run that stopped before its end; Run wraps them.
var (
	// ErrStopped: the run stopped early and its results are partial.
	ErrStopped = errors.New("benchmark stopped early, results are partial")
	// ErrTooManyFailures: too many requests failed in a row (a dead server).
	ErrTooManyFailures = errors.New("too many consecutive failed requests")
	// ErrMaxDuration: the whole benchmark ran past its time limit.
	ErrMaxDuration = errors.New("benchmark ran past --max-duration")
	// ErrIncomplete: a stream ended without its final event.
	ErrIncomplete = errors.New("stream ended without a final event")
)

// Config is one benchmark: the load, the workload and the limits.
type Config struct {
	NumRequests int // measured requests per point
	// RequestsPerConcurrency, when positive, sizes each point with a finite
	// concurrency to that many waves instead: RequestsPerConcurrency ×
	// concurrency requests, so a sweep spends similar time on every point.
	RequestsPerConcurrency int
	Concurrency            int     // requests in flight at most; 0: unlimited
	RequestRate            Rate    // arrivals per second; Inf: all at once
	Burstiness             float64 // Gamma shape of the arrival gaps; 1: Poisson
	Seed                   uint64  // seeds arrivals, lengths and image choice
	Warmup                 int     // requests sent before measuring, not counted

	SweepConcurrency []int         // run one point per concurrency
	SweepRates       []Rate        // or one point per request rate
	StopLatency      time.Duration // stop a sweep once p99 e2e passes it (0: never)

	Stages      int     // run stages 1..Stages (1–4)
	OutputLens  LenDist // max_new_tokens per stage
	IgnoreEOS   bool    // generate exactly max_new_tokens
	RepeatRatio float64 // fraction of requests that resend an earlier image

	SLO SLO // goodput objective

	// MetricsURL, when set, is the server's Prometheus /metrics: it is
	// scraped before and after every point, and the increase of the server's
	// counters and histograms is recorded with the point.
	MetricsURL string
	// MetricsToken is the bearer token of a /metrics behind the server's
	// --auth-token ("" sends none).
	MetricsToken string

	RequestTimeout         time.Duration // deadline of each request (0: the client's)
	MaxDuration            time.Duration // limit of the whole benchmark (0: none)
	MaxConsecutiveFailures int           // stop after this many failures in a row (0: never)

	// Progress, when set, is called after each request completes.
	Progress func(Progress)
}

// requests is the number of measured requests of point p.
func (c *Config) requests(p point) int {
	if c.RequestsPerConcurrency > 0 && p.concurrency > 0 {
		return c.RequestsPerConcurrency * p.concurrency
	}
	return c.NumRequests
}

// Progress is the state of the running point.
type Progress struct {
	Point  string // e.g. "concurrency 4" or "warm-up"
	Done   int    // requests completed (failed included)
	Failed int
	Total  int
}

// Validate checks the options.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.NumRequests < 1:
		return bad("--num-requests must be at least 1, got %d", c.NumRequests)
	case c.RequestsPerConcurrency < 0:
		return bad("--requests-per-concurrency must be at least 0, got %d", c.RequestsPerConcurrency)
	case c.Concurrency < 0:
		return bad("--concurrency must be at least 1, got %d", c.Concurrency)
	case !(c.RequestRate > 0):
		return bad("--request-rate must be positive or inf, got %v", float64(c.RequestRate))
	case !(c.Burstiness > 0) || math.IsInf(c.Burstiness, 0):
		return bad("--burstiness must be positive, got %v", c.Burstiness)
	case c.Warmup < 0:
		return bad("--warmup must be at least 0, got %d", c.Warmup)
	case len(c.SweepConcurrency) > 0 && len(c.SweepRates) > 0:
		return bad("sweep either concurrencies or request rates, not both")
	case c.Stages < 1 || c.Stages > 4:
		return bad("--stages must be 1 to 4, got %d", c.Stages)
	case len(c.OutputLens.Lens) == 0:
		return bad("--output-lens needs at least one value")
	case !(c.RepeatRatio >= 0 && c.RepeatRatio <= 1):
		return bad("--repeat-ratio must be in [0, 1], got %v", c.RepeatRatio)
	case c.RequestTimeout < 0 || c.MaxDuration < 0 || c.StopLatency < 0:
		return bad("durations must not be negative")
	case c.MaxConsecutiveFailures < 0:
		return bad("--max-consecutive-failures must be at least 0")
	}
	for _, n := range c.SweepConcurrency {
		if n < 1 {
			return bad("sweep concurrencies must be at least 1, got %d", n)
		}
	}
	for _, r := range c.SweepRates {
		if !(r > 0) {
			return bad("sweep rates must be positive or inf, got %v", float64(r))
		}
	}
	return nil
}

// point is one load setting of a sweep.
type point struct {
	concurrency int
	rate        Rate
}

// String names the point in progress lines and messages.
func (p point) String() string {
	c := "unlimited"
	if p.concurrency > 0 {
		c = fmt.Sprint(p.concurrency)
	}
	return fmt.Sprintf("concurrency %s, rate %v", c, p.rate)
}

// points lists the load settings to run.
func (c *Config) points() []point {
	var out []point
	for _, n := range c.SweepConcurrency {
		out = append(out, point{n, c.RequestRate})
	}
	for _, r := range c.SweepRates {
		out = append(out, point{c.Concurrency, r})
	}
	if len(out) == 0 {
		out = append(out, point{c.Concurrency, c.RequestRate})
	}
	return out
}

// job is one request to send; its image bytes are made when it is sent,
// so a run holds only the images in flight.
type job struct {
	req   *pb.CaptionRequest // Image left empty
	base  []byte             // the workload image
	tag   string             // the comment that makes its bytes unique
	image int                // index of its distinct image bytes
}

// workload makes the requests of a run: fresh images get unique bytes (a
// comment carrying a nonce, the point and the index), repeats resend the
// bytes of an earlier request of the same point.
type workload struct {
	cfg    *Config
	images []Image
	rng    *rand.Rand
	nonce  uint64
}

// jobs makes n requests for the point named tag.
func (w *workload) jobs(tag string, n int) []job {
	var fresh []job // the first job of every distinct image
	out := make([]job, n)
	for i := range out {
		if len(fresh) > 0 && w.rng.Float64() < w.cfg.RepeatRatio {
			out[i] = fresh[w.rng.IntN(len(fresh))]
		} else {
			out[i] = job{
				base:  w.images[len(fresh)%len(w.images)].Data,
				tag:   fmt.Sprintf("pancap-bench %x %s %d", w.nonce, tag, i),
				image: len(fresh),
			}
			fresh = append(fresh, out[i])
		}
		out[i].req = &pb.CaptionRequest{
			Stages:       int32(w.cfg.Stages),
			MaxNewTokens: w.cfg.OutputLens.Sample(w.rng, w.cfg.Stages),
			IgnoreEos:    w.cfg.IgnoreEOS,
			RequestId:    fmt.Sprintf("bench-%s-%d", tag, i),
		}
	}
	return out
}

// Run benchmarks the server behind s with images as the workload: the
// warm-up, then every point of the sweep (one point without a sweep). It
// always returns the results measured so far; the error wraps ErrStopped
// when the run ended early (a dead server, --max-duration, ctx cancelled),
// or ErrConfig when cfg is invalid.
func Run(ctx context.Context, s Streamer, images []Image, cfg Config) ([]RunResult, string, error) {
	if err := cfg.Validate(); err != nil {
		return nil, "", err
	}
	if len(images) == 0 {
		return nil, "", fmt.Errorf("%w: no workload images", ErrConfig)
	}
	if cfg.MaxDuration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, cfg.MaxDuration, ErrMaxDuration)
		defer cancel()
	}
	for _, img := range images {
		if _, err := Tagged(img.Data, ""); err != nil {
			return nil, "", fmt.Errorf("%s: %w", img.Name, err)
		}
	}
	w := &workload{cfg: &cfg, images: images, rng: rand.New(rand.NewPCG(cfg.Seed, 1)), nonce: uint64(time.Now().UnixNano())}
	pts := cfg.points()
	if cfg.Warmup > 0 {
		jobs := w.jobs("warmup", cfg.Warmup)
		conc := cfg.Concurrency
		if len(cfg.SweepConcurrency) > 0 {
			conc = cfg.SweepConcurrency[0]
		}
		tls, _, err := runPoint(ctx, s, &cfg, "warm-up", jobs, point{conc, Inf}, nil)
		if err != nil {
			return nil, "", fmt.Errorf("%w: during the warm-up: %w", ErrStopped, err)
		}
		if ok := countOK(tls); ok == 0 {
			return nil, "", fmt.Errorf("%w: every warm-up request failed: %s", ErrStopped, firstError(tls))
		}
	}
	var runs []RunResult
	for i, p := range pts {
		n := cfg.requests(p)
		jobs := w.jobs(fmt.Sprint(i), n)
		var before sample
		if cfg.MetricsURL != "" {
			var err error
			if before, err = scrape(ctx, cfg.MetricsURL, cfg.MetricsToken); err != nil {
				return runs, "", fmt.Errorf("%w: --metrics-url: %w", ErrConfig, err)
			}
		}
		// Every point draws its arrivals from its own seeded source, so a
		// point's schedule does not depend on the points before it.
		arrivals := rand.New(rand.NewPCG(cfg.Seed, 2+uint64(i)))
		tls, wall, err := runPoint(ctx, s, &cfg, p.String(), jobs, p, arrivals)
		r := Aggregate(tls, wall, cfg.SLO)
		r.Concurrency, r.RequestRate, r.Burstiness, r.NumRequests = p.concurrency, p.rate, cfg.Burstiness, n
		if cfg.MetricsURL != "" {
			if after, serr := scrape(context.WithoutCancel(ctx), cfg.MetricsURL, cfg.MetricsToken); serr != nil {
				r.ServerMetricsError = serr.Error()
			} else {
				r.ServerMetrics = delta(before, after)
			}
		}
		runs = append(runs, r)
		if err != nil {
			return runs, "", fmt.Errorf("%w at %s after %d of %d requests: %w", ErrStopped, p, r.Completed, n, err)
		}
		if cfg.StopLatency > 0 && r.E2E.P99 > msOf(cfg.StopLatency) && i < len(pts)-1 {
			return runs, fmt.Sprintf("sweep stopped at %s: p99 e2e latency %.0f ms passed --stop-latency-ms %.0f", p, r.E2E.P99, msOf(cfg.StopLatency)), nil
		}
	}
	return runs, "", nil
}

// runPoint sends jobs with the load of p, drawing the arrival gaps from
// arrivals when the rate is finite, and returns what each request saw and
// the wall time of the point. Its error is why it stopped early.
func runPoint(ctx context.Context, s Streamer, cfg *Config, name string, jobs []job, p point, arrivals *rand.Rand) ([]Timeline, time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var sem chan struct{}
	if p.concurrency > 0 {
		sem = make(chan struct{}, p.concurrency)
	}
	var (
		mu          sync.Mutex
		out         = make([]Timeline, 0, len(jobs))
		failed, run int
		wg          sync.WaitGroup
	)
	start := time.Now()
	report := func() {
		if cfg.Progress != nil {
			cfg.Progress(Progress{Point: name, Done: len(out), Failed: failed, Total: len(jobs)})
		}
	}
	report()
dispatch:
	for i, j := range jobs {
		if !p.rate.IsInf() && i > 0 {
			t := time.NewTimer(gammaInterval(arrivals, p.rate, cfg.Burstiness))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				break dispatch
			}
		}
		if sem != nil {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				break dispatch
			}
		}
		if stopCause(ctx) != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sem != nil {
				// Released after the failure count below, so a run that
				// must stop sends nothing more.
				defer func() { <-sem }()
			}
			req := j.req
			req.Image, _ = Tagged(j.base, j.tag) // Run checked that every image takes a tag
			t0 := time.Now()
			tl := do(ctx, s, req, cfg.RequestTimeout)
			req.Image = nil
			tl.Start, tl.Image = t0.Sub(start), j.image
			mu.Lock()
			defer mu.Unlock()
			out = append(out, tl)
			if tl.OK() {
				run = 0
			} else {
				failed++
				run++
				if cfg.MaxConsecutiveFailures > 0 && run >= cfg.MaxConsecutiveFailures {
					cancel(fmt.Errorf("%w (%d, the last %s: %s)", ErrTooManyFailures, run, tl.Code, tl.Message))
				}
			}
			report()
		}()
	}
	wg.Wait()
	return out, time.Since(start), stopCause(ctx)
}

// stopCause is why ctx stopped the run, nil while it runs. A deadline
// counts from the moment it passes, which calls see before ctx's own timer
// fires.
func stopCause(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		<-ctx.Done()
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// do sends one request and records its timeline.
func do(ctx context.Context, s Streamer, req *pb.CaptionRequest, timeout time.Duration) Timeline {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var tl Timeline
	start := time.Now()
	final := false
	stage := func(n int) *StageTimeline { // the timeline of stage n, added when new
		for i := range tl.Stages {
			if tl.Stages[i].Stage == n {
				return &tl.Stages[i]
			}
		}
		tl.Stages = append(tl.Stages, StageTimeline{Stage: n, Started: time.Since(start)})
		return &tl.Stages[len(tl.Stages)-1]
	}
	for ev, err := range s.StreamCaption(ctx, req) {
		now := time.Since(start)
		if err != nil {
			tl.E2E = now
			tl.Code, tl.Message = errCode(ctx, err)
			return tl
		}
		switch e := ev.GetEvent().(type) {
		case *pb.CaptionEvent_ImageEncoded:
			tl.VisionTime += e.ImageEncoded.GetDuration().AsDuration()
			if e.ImageEncoded.GetCached() {
				tl.VisionCached++
			} else {
				tl.VisionRuns++
			}
		case *pb.CaptionEvent_StageStarted:
			st := stage(int(e.StageStarted.GetStage()))
			st.Started, st.PromptTokens, st.CachedTokens = now, int(e.StageStarted.GetPromptTokens()), int(e.StageStarted.GetCachedTokens())
		case *pb.CaptionEvent_TokenDelta:
			d := e.TokenDelta
			if n := len(d.GetTokenIds()); n > 0 || d.GetText() != "" {
				st := stage(int(d.GetStage()))
				st.Chunks = append(st.Chunks, Chunk{At: now, Tokens: n})
			}
		case *pb.CaptionEvent_StageFinished:
			st := stage(int(e.StageFinished.GetStage()))
			st.Finished = now
			applyUsage(st, e.StageFinished.GetUsage())
			if tm := e.StageFinished.GetTiming(); tm != nil {
				st.ServerQueued, st.ServerFirstToken, st.ServerTotal = tm.GetQueued().AsDuration(), tm.GetFirstToken().AsDuration(), tm.GetTotal().AsDuration()
			}
		case *pb.CaptionEvent_Final:
			final = true
			tl.E2E = now
			for _, r := range e.Final.GetStages() {
				applyUsage(stage(int(r.GetStage())), r.GetUsage())
			}
		}
	}
	if !final {
		tl.E2E = time.Since(start)
		tl.Code, tl.Message = codeNames[codes.Unknown], ErrIncomplete.Error()
	}
	for i := range tl.Stages {
		if st := &tl.Stages[i]; st.Tokens == 0 {
			for _, c := range st.Chunks {
				st.Tokens += c.Tokens
			}
		}
	}
	return tl
}

// applyUsage takes the server's token counts of a stage when it sent them.
func applyUsage(st *StageTimeline, u *pb.Usage) {
	if u == nil {
		return
	}
	if u.GetGeneratedTokens() > 0 {
		st.Tokens = int(u.GetGeneratedTokens())
	}
	if u.GetPromptTokens() > 0 {
		st.PromptTokens, st.CachedTokens = int(u.GetPromptTokens()), int(u.GetCachedTokens())
	}
}

// codeNames are the canonical names of the gRPC codes.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// errCode names the gRPC code of a failed call and its message. When the
// call's own context ended (deadline, run stopped) that is the reason,
// whatever the server answered meanwhile.
func errCode(ctx context.Context, err error) (string, string) {
	st, ok := status.FromError(err)
	switch {
	case ctx.Err() != nil:
		st = status.FromContextError(ctx.Err())
	case !ok:
		st = status.New(codes.Unknown, err.Error())
	}
	name, ok := codeNames[st.Code()]
	if !ok {
		name = st.Code().String()
	}
	return name, st.Message()
}

func countOK(tls []Timeline) int {
	n := 0
	for i := range tls {
		if tls[i].OK() {
			n++
		}
	}
	return n
}

// firstError describes the first failed request of tls.
func firstError(tls []Timeline) string {
	for i := range tls {
		if !tls[i].OK() {
			return tls[i].Code + ": " + tls[i].Message
		}
	}
	return "no request was sent"
}

// ratio is a/b, 0 when b is 0.
func ratio[T int | float64](a, b T) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
