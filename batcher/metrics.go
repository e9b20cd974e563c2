package batcher

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pancap-serve/pancap/engine"
)

// metrics are the batcher's Prometheus collectors, named like vLLM's with a
// pancap_ prefix. Latency histograms carry a "stage" label ("localize", …,
// "caption", or "generate" for a GenerateRequest).
type metrics struct {
	ttft         *prometheus.HistogramVec
	itl          *prometheus.HistogramVec
	e2e          *prometheus.HistogramVec
	queueTime    prometheus.Histogram
	running      prometheus.Gauge
	waiting      prometheus.Gauge
	kvUsage      prometheus.Gauge
	prefixQuery  prometheus.Counter
	prefixHit    prometheus.Counter
	visionRuns   prometheus.Counter
	batchSize    prometheus.Histogram
	stepTokens   prometheus.Histogram
	promptTokens *prometheus.CounterVec
	genTokens    *prometheus.CounterVec
	preemptions  prometheus.Counter
	panics       prometheus.Counter
	// Speculative decoding, as vLLM's spec_decode counters: verification
	// steps, draft tokens verified, draft tokens accepted.
	specDrafts      *prometheus.CounterVec
	specDraftTokens *prometheus.CounterVec
	specAccepted    *prometheus.CounterVec
}

// latencyBuckets span 1 ms to 10 min.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
	0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 320, 600}

// newMetrics builds the collectors and registers them on reg when not nil.
func newMetrics(reg prometheus.Registerer) *metrics {
	stage := []string{"stage"}
	m := &metrics{
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pancap_time_to_first_token_seconds", Help: "Time from stage start (request arrival for the first stage) to its first token.",
			Buckets: latencyBuckets}, stage),
		itl: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pancap_inter_token_latency_seconds", Help: "Time between two generated tokens of a stage (vLLM's time_per_output_token).",
			Buckets: latencyBuckets}, stage),
		e2e: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pancap_e2e_request_latency_seconds", Help: "Time from arrival to the end of a request; stage is its last stage.",
			Buckets: latencyBuckets}, stage),
		queueTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pancap_request_queue_time_seconds", Help: "Time a request waited for admission.", Buckets: latencyBuckets}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pancap_num_requests_running", Help: "Requests admitted and not finished."}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pancap_num_requests_waiting", Help: "Requests waiting for admission."}),
		kvUsage: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pancap_kv_cache_usage_perc", Help: "Fraction of KV-cache blocks referenced by running sequences (1 = full)."}),
		prefixQuery: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pancap_prefix_cache_queries_total", Help: "Prompt tokens looked up in the prefix cache."}),
		prefixHit: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pancap_prefix_cache_hits_total", Help: "Prompt tokens found in the prefix cache."}),
		visionRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pancap_vision_encoder_runs_total", Help: "Images run through the vision encoder."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pancap_batch_size", Help: "Sequences per forward step.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		stepTokens: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pancap_tokens_per_step", Help: "Tokens per forward step (decode plus prefill).", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		promptTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pancap_prompt_tokens_total", Help: "Prompt tokens of started stages, image tokens included."}, stage),
		genTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pancap_generation_tokens_total", Help: "Generated tokens."}, stage),
		preemptions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pancap_num_preemptions_total", Help: "Sequences whose KV blocks were taken back, to be recomputed."}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pancap_step_loop_panics_total", Help: "Panics recovered in the step loop."}),
		specDrafts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pancap_spec_decode_num_drafts_total", Help: "Speculative verification steps (drafts verified)."}, stage),
		specDraftTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pancap_spec_decode_num_draft_tokens_total", Help: "Draft tokens verified."}, stage),
		specAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pancap_spec_decode_num_accepted_tokens_total", Help: "Draft tokens accepted (equal to what decoding without them gives)."}, stage),
	}
	if reg != nil {
		reg.MustRegister(m.ttft, m.itl, m.e2e, m.queueTime, m.running, m.waiting, m.kvUsage, m.prefixQuery,
			m.prefixHit, m.visionRuns, m.batchSize, m.stepTokens, m.promptTokens, m.genTokens, m.preemptions, m.panics,
			m.specDrafts, m.specDraftTokens, m.specAccepted)
	}
	return m
}

// CacheConfigInfo returns the info gauge pancap_cache_config_info, always 1,
// whose labels block_size and num_gpu_blocks describe the KV pool of a model
// of spec: vLLM's cache_config_info, which the Gateway API Inference
// Extension's endpoint picker reads (--cache-info-metric).
func CacheConfigInfo(spec engine.Spec) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pancap_cache_config_info", Help: "KV-cache configuration in the labels block_size (tokens per block) and num_gpu_blocks (blocks in the pool, on any device); always 1."},
		[]string{"block_size", "num_gpu_blocks"})
	g.WithLabelValues(strconv.Itoa(spec.KVBlockSize), strconv.Itoa(spec.KVBlocks)).Set(1)
	return g
}
