package benchmarks

import (
	"math"
	"slices"
	"time"
)

// Chunk is one streamed token_delta event as the client saw it.
type Chunk struct {
	At     time.Duration // arrival, from the request's start
	Tokens int           // token ids in the delta
}

// StageTimeline is what the client saw of one stage of one request.
type StageTimeline struct {
	Stage        int           // 1–4
	Started      time.Duration // arrival of stage_started, from the request's start
	Finished     time.Duration // arrival of stage_finished (0: not seen)
	Chunks       []Chunk       // token deltas in arrival order
	Tokens       int           // generated tokens: usage.generated_tokens, else the sum over Chunks
	PromptTokens int           // usage.prompt_tokens (image tokens included)
	CachedTokens int           // usage.cached_tokens: prompt tokens served by the prefix cache

	// The server's own timing of the stage (stage_finished.timing).
	ServerQueued, ServerFirstToken, ServerTotal time.Duration
}

// Timeline is what the client saw of one request, all times measured from
// the moment the call was made.
type Timeline struct {
	Image        int           // index of the distinct image bytes sent
	Start        time.Duration // when the call was made, from the start of the run
	E2E          time.Duration // arrival of the final event (or of the error)
	Stages       []StageTimeline
	VisionRuns   int           // image_encoded events with cached=false
	VisionCached int           // image_encoded events with cached=true
	VisionTime   time.Duration // sum of the image_encoded durations the server reported
	Code         string        // canonical gRPC code of the error; "" on success
	Message      string        // the error's message
}

// OK reports whether the request succeeded.
func (t *Timeline) OK() bool { return t.Code == "" }

// OutputTokens is the number of tokens generated over all stages.
func (t *Timeline) OutputTokens() int {
	n := 0
	for _, s := range t.Stages {
		n += s.Tokens
	}
	return n
}

// PromptTokens is the number of prompt tokens over all stages.
func (t *Timeline) PromptTokens() int {
	n := 0
	for _, s := range t.Stages {
		n += s.PromptTokens
	}
	return n
}

// TTFT is the time from the request's start to the first token of its first
// stage; ok is false when the first stage streamed no token.
func (t *Timeline) TTFT() (d time.Duration, ok bool) {
	if len(t.Stages) == 0 || len(t.Stages[0].Chunks) == 0 {
		return 0, false
	}
	return t.Stages[0].Chunks[0].At, true
}

// TPOT is vLLM's time per output token, (e2e − TTFT)/(tokens − 1); ok is
// false for requests of fewer than two tokens. For a chain it includes the
// prefill of stages 2–4.
func (t *Timeline) TPOT() (d time.Duration, ok bool) {
	ttft, ok := t.TTFT()
	n := t.OutputTokens()
	if !ok || n < 2 {
		return 0, false
	}
	return (t.E2E - ttft) / time.Duration(n-1), true
}

// ITLs are the gaps between consecutive token chunks within each stage (the
// gap from a stage's end to the next stage's first token is that stage's
// TTFT, not an ITL).
func (t *Timeline) ITLs() []time.Duration {
	var out []time.Duration
	for _, s := range t.Stages {
		for i := 1; i < len(s.Chunks); i++ {
			out = append(out, s.Chunks[i].At-s.Chunks[i-1].At)
		}
	}
	return out
}

// StageTTFT is the time a stage's user waits for its first token: from the
// request's start for the first stage, from the previous stage's
// stage_finished for the others; ok is false when the stage streamed no
// token.
func (t *Timeline) StageTTFT(i int) (d time.Duration, ok bool) {
	s := t.Stages[i]
	if len(s.Chunks) == 0 {
		return 0, false
	}
	from := time.Duration(0)
	if i > 0 {
		from = t.Stages[i-1].Finished
	}
	return s.Chunks[0].At - from, true
}

// StageTPOT is (last token − first token)/(tokens − 1) within a stage; ok is
// false for stages of fewer than two tokens.
func (t *Timeline) StageTPOT(i int) (d time.Duration, ok bool) {
	s := t.Stages[i]
	if len(s.Chunks) == 0 || s.Tokens < 2 {
		return 0, false
	}
	return (s.Chunks[len(s.Chunks)-1].At - s.Chunks[0].At) / time.Duration(s.Tokens-1), true
}

// ChainLatency is the time from the first stage's stage_started to the last
// stage's stage_finished: the chain without queueing and image encoding; ok
// is false when either event is missing.
func (t *Timeline) ChainLatency() (d time.Duration, ok bool) {
	if len(t.Stages) == 0 {
		return 0, false
	}
	last := t.Stages[len(t.Stages)-1]
	if last.Finished == 0 {
		return 0, false
	}
	return last.Finished - t.Stages[0].Started, true
}

// Stats summarises a sample the way vLLM's benchmark does: mean, median,
// population standard deviation and linearly interpolated percentiles
// (numpy's default).
type Stats struct {
	Count  int     `json:"count"`
	Mean   float64 `json:"mean"`
	Median float64 `json:"median"`
	Std    float64 `json:"std"`
	P90    float64 `json:"p90"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize computes Stats of xs; the zero Stats for an empty sample.
func Summarize(xs []float64) Stats {
	if len(xs) == 0 {
		return Stats{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	mean := sum / float64(len(s))
	var ss float64
	for _, x := range s {
		ss += (x - mean) * (x - mean)
	}
	return Stats{
		Count:  len(s),
		Mean:   mean,
		Median: Percentile(s, 50),
		Std:    math.Sqrt(ss / float64(len(s))),
		P90:    Percentile(s, 90),
		P95:    Percentile(s, 95),
		P99:    Percentile(s, 99),
		Min:    s[0],
		Max:    s[len(s)-1],
	}
}

// Percentile returns the p-th percentile (0–100) of the sorted sample s with
// linear interpolation between closest ranks, as numpy.percentile does; NaN
// for an empty sample.
func Percentile(s []float64, p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	rank := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(rank))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (rank-float64(lo))*(s[hi]-s[lo])
}

// msOf converts a duration to milliseconds.
func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
