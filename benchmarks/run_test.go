package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pancap-serve/pancap/client"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// scripted is a Captioner that streams a chain of max_new_tokens tokens
// per stage, one token per delta, with the image cache and prefix cache
// counts a real server reports: an image seen before is cached, and stages
// 2–4 reuse the prefix of stage 1.
type scripted struct {
	pb.UnimplementedCaptionerServer
	gap time.Duration // between tokens

	mu          sync.Mutex
	seen        map[string]bool
	calls       int
	inFlight    int
	maxInFlight int
	// onCall, when set, runs at the start of call n (from 1) and may
	// replace the stream with an error or a block.
	onCall func(n int, ctx context.Context) error
}

const promptTokens, prefixTokens = 40, 30

func (s *scripted) StreamCaption(req *pb.CaptionRequest, stream grpc.ServerStreamingServer[pb.CaptionEvent]) error {
	s.mu.Lock()
	s.calls++
	n := s.calls
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	cached := s.seen[string(req.Image)]
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[string(req.Image)] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	if s.onCall != nil {
		if err := s.onCall(n, stream.Context()); err != nil {
			return err
		}
	}
	send := func(ev *pb.CaptionEvent) error { return stream.Send(ev) }
	enc := &pb.ImageEncoded{Cached: cached, Stage: pb.Stage_STAGE_LOCALIZE}
	if !cached {
		enc.Duration = durationpb.New(3 * time.Millisecond)
	}
	if err := send(&pb.CaptionEvent{Event: &pb.CaptionEvent_ImageEncoded{ImageEncoded: enc}}); err != nil {
		return err
	}
	final := &pb.CaptionResponse{RequestId: req.RequestId}
	for st := int32(1); st <= req.Stages; st++ {
		stage := pb.Stage(st)
		hit := int32(0)
		if cached || st > 1 {
			hit = prefixTokens
		}
		if err := send(&pb.CaptionEvent{Event: &pb.CaptionEvent_StageStarted{StageStarted: &pb.StageStarted{Stage: stage, PromptTokens: promptTokens, CachedTokens: hit}}}); err != nil {
			return err
		}
		toks := req.MaxNewTokens[st-1]
		for i := range toks {
			time.Sleep(s.gap)
			if err := send(&pb.CaptionEvent{Event: &pb.CaptionEvent_TokenDelta{TokenDelta: &pb.TokenDelta{Stage: stage, Text: "x", TokenIds: []int32{i}}}}); err != nil {
				return err
			}
		}
		usage := &pb.Usage{PromptTokens: promptTokens, CachedTokens: hit, GeneratedTokens: toks}
		if err := send(&pb.CaptionEvent{Event: &pb.CaptionEvent_StageFinished{StageFinished: &pb.StageFinished{
			Stage: stage, Usage: usage, Timing: &pb.Timing{FirstToken: durationpb.New(time.Millisecond), Total: durationpb.New(2 * time.Millisecond)}}}}); err != nil {
			return err
		}
		final.Stages = append(final.Stages, &pb.StageResult{Stage: stage, Usage: usage})
	}
	return send(&pb.CaptionEvent{Event: &pb.CaptionEvent_Final{Final: final}})
}

// serve runs s on a loopback port and returns a client without retries and
// the grpc server.
func serve(t *testing.T, s *scripted) (*client.Client, *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterCaptionerServer(srv, s)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lis) }()
	c, err := client.Dial(lis.Addr().String(), client.WithRetry(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Stop()
		<-done
	})
	return c, srv
}

// testImages are two tiny synthetic images.
func testImages(t *testing.T) []Image {
	t.Helper()
	imgs, err := Synthetic([][2]int{{16, 12}, {8, 8}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

func baseConfig() Config {
	return Config{
		NumRequests: 8, Concurrency: 2, RequestRate: Inf, Burstiness: 1, Stages: 4,
		OutputLens: LenDist{Lens: []int{3, 4, 2, 5}}, IgnoreEOS: true, RequestTimeout: 5 * time.Second,
		MaxConsecutiveFailures: 3,
	}
}

func TestRunClosedLoop(t *testing.T) {
	s := &scripted{gap: 200 * time.Microsecond}
	c, _ := serve(t, s)
	cfg := baseConfig()
	cfg.Warmup = 2
	cfg.SLO = SLO{E2E: time.Hour}
	var last Progress
	cfg.Progress = func(p Progress) { last = p }
	runs, note, err := Run(t.Context(), c, testImages(t), cfg)
	if err != nil || note != "" {
		t.Fatal(err, note)
	}
	if len(runs) != 1 {
		t.Fatalf("%d runs", len(runs))
	}
	r := runs[0]
	if r.Completed != 8 || r.Failed != 0 || r.Sent != 8 || len(r.Requests) != 8 {
		t.Fatalf("completed %d failed %d sent %d", r.Completed, r.Failed, r.Sent)
	}
	if r.TotalOutputTokens != 8*14 || r.TotalPromptTokens != 8*4*promptTokens {
		t.Fatalf("tokens %d prompt %d", r.TotalOutputTokens, r.TotalPromptTokens)
	}
	if s.calls != 10 || s.maxInFlight > 2 {
		t.Fatalf("calls %d (warm-up included), max in flight %d", s.calls, s.maxInFlight)
	}
	if len(r.Stages) != 4 || r.Stages[3].Tokens.Mean != 5 || r.Stages[1].CachedTokens != 8*prefixTokens || r.Stages[0].CachedTokens != 0 {
		t.Fatalf("stages %+v", r.Stages)
	}
	if r.TTFT.Count != 8 || r.TPOT.Count != 8 || r.ITL.Count != 8*(2+3+1+4) || r.E2E.Count != 8 || r.Chain.Count != 8 {
		t.Fatalf("counts ttft %d tpot %d itl %d e2e %d chain %d", r.TTFT.Count, r.TPOT.Count, r.ITL.Count, r.E2E.Count, r.Chain.Count)
	}
	if !(r.TTFT.Mean > 0 && r.TTFT.Mean < r.E2E.Mean && r.Chain.Mean <= r.E2E.Mean) {
		t.Fatalf("ttft %v chain %v e2e %v", r.TTFT.Mean, r.Chain.Mean, r.E2E.Mean)
	}
	if r.Vision.Runs != 8 || r.Vision.RunsPerRequest != 1 || r.DistinctImages != 8 || r.Vision.RunsPerDistinctImage != 1 {
		t.Fatalf("vision %+v distinct %d", r.Vision, r.DistinctImages)
	}
	if r.Vision.EncodeMS.Mean != 3 || r.Stages[2].ServerFirstToken.Mean != 1 || r.Stages[2].ServerTotal.P99 != 2 {
		t.Fatalf("server timings: encode %+v stage 3 %+v", r.Vision.EncodeMS, r.Stages[2])
	}
	if r.Goodput == nil || *r.Goodput != r.RequestThroughput || r.RequestThroughput <= 0 {
		t.Fatalf("goodput %v throughput %v", r.Goodput, r.RequestThroughput)
	}
	if last.Done != 8 || last.Total != 8 {
		t.Fatalf("last progress %+v", last)
	}
}

func TestRunRepeatedImagesHitTheCaches(t *testing.T) {
	s := &scripted{}
	c, _ := serve(t, s)
	cfg := baseConfig()
	cfg.NumRequests, cfg.RepeatRatio, cfg.Stages, cfg.Seed = 20, 0.5, 1, 7
	runs, _, err := Run(t.Context(), c, testImages(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := runs[0]
	if r.DistinctImages >= 20 || r.DistinctImages < 2 {
		t.Fatalf("distinct images %d of 20 at repeat ratio 0.5", r.DistinctImages)
	}
	if r.Vision.Runs != r.DistinctImages || r.Vision.CacheHits != 20-r.DistinctImages {
		t.Fatalf("vision %+v, distinct %d", r.Vision, r.DistinctImages)
	}
	if want := (20 - r.DistinctImages) * prefixTokens; r.PrefixCache.CachedTokens != want {
		t.Fatalf("cached tokens %d, want %d", r.PrefixCache.CachedTokens, want)
	}
}

func TestRunPoissonArrivals(t *testing.T) {
	s := &scripted{}
	c, _ := serve(t, s)
	cfg := baseConfig()
	cfg.Concurrency, cfg.RequestRate, cfg.NumRequests, cfg.Stages = 0, 400, 10, 1
	runs, _, err := Run(t.Context(), c, testImages(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var last float64
	for _, rq := range runs[0].Requests {
		last = max(last, rq.StartMS)
	}
	// Nine gaps of mean 2.5 ms: the last request cannot start at once.
	if runs[0].Completed != 10 || last < 1 {
		t.Fatalf("completed %d, last start %.3f ms", runs[0].Completed, last)
	}
}

func TestSweepStopsAtLatency(t *testing.T) {
	s := &scripted{gap: time.Millisecond}
	c, _ := serve(t, s)
	cfg := baseConfig()
	cfg.Concurrency, cfg.NumRequests, cfg.Stages = 0, 3, 1
	cfg.SweepConcurrency = []int{1, 2, 4}
	cfg.StopLatency = time.Millisecond // the 3 tokens alone take longer
	runs, note, err := Run(t.Context(), c, testImages(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Concurrency != 1 || note == "" {
		t.Fatalf("%d runs, note %q", len(runs), note)
	}
	cfg.StopLatency = 0
	runs, _, err = Run(t.Context(), c, testImages(t), cfg)
	if err != nil || len(runs) != 3 || runs[2].Concurrency != 4 {
		t.Fatalf("%d runs, %v", len(runs), err)
	}
}

func TestServerDiesMidRun(t *testing.T) {
	s := &scripted{gap: time.Millisecond}
	c, srv := serve(t, s)
	s.onCall = func(n int, ctx context.Context) error {
		if n == 4 {
			go srv.Stop() // kills open streams and the listener
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	cfg := baseConfig()
	cfg.NumRequests = 50
	start := time.Now()
	runs, _, err := Run(t.Context(), c, testImages(t), cfg)
	if !errors.Is(err, ErrStopped) || !errors.Is(err, ErrTooManyFailures) {
		t.Fatalf("err %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
	r := runs[0]
	if r.Completed < 1 || r.Completed > 3 || r.Errors["UNAVAILABLE"] < 3 || r.Sent >= 50 {
		t.Fatalf("completed %d sent %d errors %v", r.Completed, r.Sent, r.Errors)
	}
}

func TestRequestTimeoutAndMaxDuration(t *testing.T) {
	s := &scripted{}
	s.onCall = func(_ int, ctx context.Context) error {
		<-ctx.Done() // a hung server
		return status.FromContextError(ctx.Err()).Err()
	}
	c, _ := serve(t, s)
	cfg := baseConfig()
	cfg.RequestTimeout, cfg.MaxConsecutiveFailures = 50*time.Millisecond, 0
	runs, _, err := Run(t.Context(), c, testImages(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if runs[0].Errors["DEADLINE_EXCEEDED"] != 8 || runs[0].Completed != 0 {
		t.Fatalf("errors %v", runs[0].Errors)
	}
	cfg.RequestTimeout, cfg.MaxDuration = 0, 100*time.Millisecond
	start := time.Now()
	runs, _, err = Run(t.Context(), c, testImages(t), cfg)
	if !errors.Is(err, ErrMaxDuration) || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %v: %+v", err, time.Since(start), runs[0].Requests)
	}
	if runs[0].Sent != 2 {
		t.Fatalf("sent %d, want the 2 in flight", runs[0].Sent)
	}
}

func TestWarmupFailureStops(t *testing.T) {
	s := &scripted{onCall: func(int, context.Context) error { return status.Error(codes.InvalidArgument, "bad image") }}
	c, _ := serve(t, s)
	cfg := baseConfig()
	cfg.Warmup = 2
	_, _, err := Run(t.Context(), c, testImages(t), cfg)
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("err %v", err)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"requests":    func(c *Config) { c.NumRequests = 0 },
		"concurrency": func(c *Config) { c.Concurrency = -1 },
		"rate":        func(c *Config) { c.RequestRate = -2 },
		"burstiness":  func(c *Config) { c.Burstiness = 0 },
		"stages":      func(c *Config) { c.Stages = 5 },
		"repeat":      func(c *Config) { c.RepeatRatio = 1.5 },
		"two sweeps":  func(c *Config) { c.SweepConcurrency, c.SweepRates = []int{1}, []Rate{1} },
		"sweep value": func(c *Config) { c.SweepConcurrency = []int{0} },
		"lens":        func(c *Config) { c.OutputLens = LenDist{} },
	} {
		cfg := baseConfig()
		mod(&cfg)
		if _, _, err := Run(context.Background(), nil, nil, cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := Run(context.Background(), nil, []Image{{Name: "x.gif", Data: []byte("GIF89a")}}, baseConfig()); !errors.Is(err, ErrImage) {
		t.Errorf("an image that takes no tag: %v", err)
	}
}

func TestRunScrapesServerMetrics(t *testing.T) {
	var scrapes atomic.Int32
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := scrapes.Add(1) // 1 before the point, 2 after it
		fmt.Fprintf(w, "# TYPE pancap_vision_encoder_runs_total counter\npancap_vision_encoder_runs_total %d\n", 8*(n-1))
		fmt.Fprintf(w, "# TYPE pancap_ttft_seconds histogram\n"+
			"pancap_ttft_seconds_bucket{le=\"+Inf\"} %d\npancap_ttft_seconds_sum %g\npancap_ttft_seconds_count %d\n", 8*(n-1), 0.4*float64(n-1), 8*(n-1))
		fmt.Fprintf(w, "# TYPE go_goroutines gauge\ngo_goroutines 7\n")
	}))
	defer metrics.Close()
	c, _ := serve(t, &scripted{})
	cfg := baseConfig()
	cfg.MetricsURL = metrics.URL
	runs, _, err := Run(t.Context(), c, testImages(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := runs[0].ServerMetrics
	if len(got) != 3 || got["pancap_vision_encoder_runs_total"] != 8 || got["pancap_ttft_seconds:count"] != 8 || math.Abs(got["pancap_ttft_seconds:mean"]-0.05) > 1e-12 {
		t.Fatalf("server metrics %v", got)
	}
	var b strings.Builder
	if err := WriteTable(&b, &Result{Runs: runs}); err != nil || !strings.Contains(b.String(), "pancap_ttft_seconds:mean") {
		t.Fatalf("table: %v\n%s", err, b.String())
	}
	cfg.MetricsURL = "http://127.0.0.1:1/metrics"
	if _, _, err := Run(t.Context(), c, testImages(t), cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("unreachable metrics: %v", err)
	}
}

func TestRunRequestsPerConcurrency(t *testing.T) {
	s := &scripted{gap: 100 * time.Microsecond}
	c, _ := serve(t, s)
	cfg := baseConfig()
	cfg.SweepConcurrency, cfg.RequestsPerConcurrency = []int{1, 3}, 2
	runs, _, err := Run(t.Context(), c, testImages(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].NumRequests != 2 || runs[0].Completed != 2 || runs[1].NumRequests != 6 || runs[1].Completed != 6 {
		t.Fatalf("runs %+v", runs)
	}
}
