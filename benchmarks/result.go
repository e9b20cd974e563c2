package benchmarks

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/pancap-serve/pancap/internal/buildinfo"
	pb "github.com/pancap-serve/pancap/proto/pancap/v1"
)

// SchemaVersion is the version of the JSON result format (README.md).
const SchemaVersion = 1

// StageNames are the names of stages 1–4.
var StageNames = [...]string{1: "localize", 2: "tag", 3: "discover", 4: "caption"}

// Result is the JSON result file of one `pancap bench` invocation.
type Result struct {
	SchemaVersion int               `json:"schema_version"`
	Label         string            `json:"label"`
	StartedAt     time.Time         `json:"started_at"`
	Tool          Tool              `json:"tool"`
	Server        Server            `json:"server"`
	Flags         map[string]string `json:"flags"`
	Workload      Workload          `json:"workload"`
	SLO           SLO               `json:"slo"`
	Runs          []RunResult       `json:"runs"`
	Partial       bool              `json:"partial"`
	StopReason    string            `json:"stop_reason,omitempty"`
}

// Tool identifies the build and the machine that ran the load generator.
type Tool struct {
	Version   string `json:"version"`
	GitCommit string `json:"git_commit"` // the commit the binary was built from ("" when unrecorded)
	GitDirty  bool   `json:"git_dirty"`
	GoVersion string `json:"go_version"`
	Host      string `json:"host"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
}

// NewTool describes this build and machine: the version and commit the
// binary records (internal/buildinfo), not those of the directory it runs in.
func NewTool() Tool {
	b := buildinfo.Read()
	t := Tool{Version: b.Version, GitCommit: b.Commit, GitDirty: b.Dirty,
		GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU()}
	t.Host, _ = os.Hostname()
	return t
}

// Server is the benchmarked server as GetModelInfo described it.
type Server struct {
	Addr          string `json:"addr"`
	Version       string `json:"version"` // the server's build (GetModelInfo's server_version)
	Model         string `json:"model"`
	DType         string `json:"dtype"`
	Device        string `json:"device"`
	RandomWeights bool   `json:"random_weights"`
	HiddenSize    int    `json:"hidden_size"`
	VocabSize     int    `json:"vocab_size"`
	ImageTokens   int    `json:"image_tokens"`
	ImageSize     int    `json:"image_size"`
	MaxContext    int    `json:"max_context"`
	KVBlockSize   int    `json:"kv_block_size"`
	KVBlocks      int    `json:"kv_blocks"`
	KVCacheDType  string `json:"kv_cache_dtype"`
}

// NewServer describes the server at addr from its model info.
func NewServer(addr string, m *pb.ModelInfo) Server {
	a := m.GetArchitecture()
	return Server{
		Addr: addr, Version: m.GetServerVersion(), Model: m.GetName(), DType: m.GetDtype(), Device: m.GetDevice(), RandomWeights: m.GetRandomWeights(),
		HiddenSize: int(a.GetHiddenSize()), VocabSize: int(a.GetVocabSize()), ImageTokens: int(a.GetImageTokens()),
		ImageSize: int(a.GetImageSize()), MaxContext: int(a.GetMaxContext()),
		KVBlockSize: int(a.GetKvBlockSize()), KVBlocks: int(a.GetKvBlocks()), KVCacheDType: a.GetKvCacheDtype(),
	}
}

// Workload describes the requests.
type Workload struct {
	Images      []Image `json:"images"`
	Stages      int     `json:"stages"`
	OutputLens  LenDist `json:"output_lens"`
	IgnoreEOS   bool    `json:"ignore_eos"`
	RepeatRatio float64 `json:"repeat_ratio"`
	Seed        uint64  `json:"seed"`
	Warmup      int     `json:"warmup"`
}

// NewWorkload describes the workload of cfg over images.
func NewWorkload(cfg *Config, images []Image) Workload {
	return Workload{Images: images, Stages: cfg.Stages, OutputLens: cfg.OutputLens, IgnoreEOS: cfg.IgnoreEOS,
		RepeatRatio: cfg.RepeatRatio, Seed: cfg.Seed, Warmup: cfg.Warmup}
}

// RunResult holds the metrics of one load setting (one point of a sweep).
// Latencies are in milliseconds and cover successful requests only.
type RunResult struct {
	Concurrency    int            `json:"concurrency"` // 0: unlimited
	RequestRate    Rate           `json:"request_rate"`
	Burstiness     float64        `json:"burstiness"`
	NumRequests    int            `json:"num_requests"`
	Sent           int            `json:"sent"`
	Completed      int            `json:"completed"`
	Failed         int            `json:"failed"`
	Errors         map[string]int `json:"errors"`          // by gRPC code
	DistinctImages int            `json:"distinct_images"` // distinct image bytes among the completed requests
	DurationS      float64        `json:"duration_s"`

	TotalPromptTokens int `json:"total_prompt_tokens"`
	TotalOutputTokens int `json:"total_output_tokens"`

	RequestThroughput     float64  `json:"request_throughput_rps"`
	OutputTokenThroughput float64  `json:"output_token_throughput_tps"`
	TotalTokenThroughput  float64  `json:"total_token_throughput_tps"`
	ImagesPerS            float64  `json:"images_per_s"`
	Goodput               *float64 `json:"goodput_rps,omitempty"`

	TTFT  Stats `json:"ttft_ms"`
	TPOT  Stats `json:"tpot_ms"`
	ITL   Stats `json:"itl_ms"`
	E2E   Stats `json:"e2e_latency_ms"`
	Chain Stats `json:"chain_latency_ms"`
	// StageTTFT pools the TTFT of every stage (one sample per stage run),
	// comparable with a server histogram observed once per stage.
	StageTTFT Stats `json:"stage_ttft_ms"`

	Stages      []StageMetrics `json:"stages"`
	PrefixCache PrefixCache    `json:"prefix_cache"`
	Vision      Vision         `json:"vision"`

	// ServerMetrics is what the server's /metrics counted during the point
	// (with --metrics-url): counter increases by name, and "NAME:count" and
	// "NAME:mean" of every histogram that observed something.
	ServerMetrics      map[string]float64 `json:"server_metrics,omitempty"`
	ServerMetricsError string             `json:"server_metrics_error,omitempty"`

	Requests []RequestRecord `json:"requests"`
}

// StageMetrics are the metrics of one stage over the successful requests.
type StageMetrics struct {
	Stage        int    `json:"stage"`
	Name         string `json:"name"`
	TTFT         Stats  `json:"ttft_ms"`
	TPOT         Stats  `json:"tpot_ms"`
	Tokens       Stats  `json:"output_tokens"`
	PromptTokens int    `json:"prompt_tokens"`
	CachedTokens int    `json:"cached_tokens"`

	// The server's own timings of the stage, from stage_finished: time
	// waiting for admission, start of the stage → first token, whole stage.
	ServerQueued     Stats `json:"server_queued_ms"`
	ServerFirstToken Stats `json:"server_first_token_ms"`
	ServerTotal      Stats `json:"server_total_ms"`
}

// PrefixCache counts the prompt tokens served by the server's prefix cache.
type PrefixCache struct {
	PromptTokens int     `json:"prompt_tokens"`
	CachedTokens int     `json:"cached_tokens"`
	HitRatio     float64 `json:"hit_ratio"`
}

// Vision counts the vision-encoder runs the server reported.
type Vision struct {
	Runs                 int     `json:"encoder_runs"`
	CacheHits            int     `json:"cache_hits"`
	RunsPerRequest       float64 `json:"runs_per_request"`
	RunsPerDistinctImage float64 `json:"runs_per_distinct_image"`
	EncodeMS             Stats   `json:"encode_ms"` // server-reported encoder time per request
}

// RequestRecord is one request of a run.
type RequestRecord struct {
	Image        int     `json:"image"`
	StartMS      float64 `json:"start_ms"`
	E2EMS        float64 `json:"e2e_ms"`
	TTFTMS       float64 `json:"ttft_ms"`
	OutputTokens int     `json:"output_tokens"`
	Code         string  `json:"code,omitempty"`
	Message      string  `json:"message,omitempty"`
}

// Aggregate computes the metrics of the requests tls that ran in wall time,
// with slo deciding goodput when set.
func Aggregate(tls []Timeline, wall time.Duration, slo SLO) RunResult {
	r := RunResult{Sent: len(tls), Errors: map[string]int{}, DurationS: wall.Seconds()}
	var ttft, tpot, itl, e2e, chain, encode, stageTTFT []float64
	stages := map[int]*stageAcc{}
	good := 0
	distinct := map[int]bool{}
	for i := range tls {
		t := &tls[i]
		rec := RequestRecord{Image: t.Image, StartMS: msOf(t.Start), E2EMS: msOf(t.E2E), OutputTokens: t.OutputTokens(), Code: t.Code, Message: t.Message}
		if d, ok := t.TTFT(); ok {
			rec.TTFTMS = msOf(d)
		}
		r.Requests = append(r.Requests, rec)
		if !t.OK() {
			r.Failed++
			r.Errors[t.Code]++
			continue
		}
		r.Completed++
		r.TotalOutputTokens += t.OutputTokens()
		r.TotalPromptTokens += t.PromptTokens()
		r.Vision.Runs += t.VisionRuns
		r.Vision.CacheHits += t.VisionCached
		distinct[t.Image] = true
		encode = append(encode, msOf(t.VisionTime))
		if slo.Good(t) {
			good++
		}
		e2e = append(e2e, msOf(t.E2E))
		if d, ok := t.TTFT(); ok {
			ttft = append(ttft, msOf(d))
		}
		if d, ok := t.TPOT(); ok {
			tpot = append(tpot, msOf(d))
		}
		for _, d := range t.ITLs() {
			itl = append(itl, msOf(d))
		}
		if d, ok := t.ChainLatency(); ok {
			chain = append(chain, msOf(d))
		}
		for j, s := range t.Stages {
			a := stages[s.Stage]
			if a == nil {
				a = &stageAcc{}
				stages[s.Stage] = a
			}
			a.add(t, j)
			if d, ok := t.StageTTFT(j); ok {
				stageTTFT = append(stageTTFT, msOf(d))
			}
		}
	}
	r.TTFT, r.TPOT, r.ITL, r.E2E, r.Chain = Summarize(ttft), Summarize(tpot), Summarize(itl), Summarize(e2e), Summarize(chain)
	r.StageTTFT = Summarize(stageTTFT)
	for n := 1; n <= 4; n++ {
		if a := stages[n]; a != nil {
			r.Stages = append(r.Stages, a.metrics(n))
			r.PrefixCache.CachedTokens += a.cached
		}
	}
	r.PrefixCache.PromptTokens = r.TotalPromptTokens
	r.PrefixCache.HitRatio = ratio(r.PrefixCache.CachedTokens, r.PrefixCache.PromptTokens)
	r.Vision.RunsPerRequest = ratio(r.Vision.Runs, r.Completed)
	r.DistinctImages = len(distinct)
	r.Vision.RunsPerDistinctImage = ratio(r.Vision.Runs, r.DistinctImages)
	r.Vision.EncodeMS = Summarize(encode)
	secs := wall.Seconds()
	r.RequestThroughput = ratio(float64(r.Completed), secs)
	r.ImagesPerS = r.RequestThroughput
	r.OutputTokenThroughput = ratio(float64(r.TotalOutputTokens), secs)
	r.TotalTokenThroughput = ratio(float64(r.TotalOutputTokens+r.TotalPromptTokens), secs)
	if slo.Set() {
		g := ratio(float64(good), secs)
		r.Goodput = &g
	}
	return r
}

// stageAcc gathers the samples of one stage.
type stageAcc struct {
	ttft, tpot, tokens   []float64
	queued, first, total []float64 // server timings
	prompt, cached       int
}

func (a *stageAcc) add(t *Timeline, i int) {
	s := t.Stages[i]
	if d, ok := t.StageTTFT(i); ok {
		a.ttft = append(a.ttft, msOf(d))
	}
	if d, ok := t.StageTPOT(i); ok {
		a.tpot = append(a.tpot, msOf(d))
	}
	a.tokens = append(a.tokens, float64(s.Tokens))
	a.queued = append(a.queued, msOf(s.ServerQueued))
	a.first = append(a.first, msOf(s.ServerFirstToken))
	a.total = append(a.total, msOf(s.ServerTotal))
	a.prompt += s.PromptTokens
	a.cached += s.CachedTokens
}

func (a *stageAcc) metrics(n int) StageMetrics {
	return StageMetrics{Stage: n, Name: StageNames[n], TTFT: Summarize(a.ttft), TPOT: Summarize(a.tpot),
		Tokens: Summarize(a.tokens), PromptTokens: a.prompt, CachedTokens: a.cached,
		ServerQueued: Summarize(a.queued), ServerFirstToken: Summarize(a.first), ServerTotal: Summarize(a.total)}
}

// WriteJSON writes r, indented, to path.
func WriteJSON(path string, r *Result) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON reads a result file written by WriteJSON.
func ReadJSON(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("%s: %w: schema_version %d, want %d", path, ErrConfig, r.SchemaVersion, SchemaVersion)
	}
	return &r, nil
}
