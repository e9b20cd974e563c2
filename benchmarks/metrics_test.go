package benchmarks

import (
	"math"
	"testing"
	"time"
)

const ms = time.Millisecond

// handmade is a two-stage request: stage 1 streams 4 tokens in 3 chunks,
// stage 2 streams 2 tokens; the final event arrives at 600 ms.
func handmade() Timeline {
	return Timeline{
		E2E: 600 * ms,
		Stages: []StageTimeline{
			{Stage: 1, Started: 100 * ms, Finished: 310 * ms, Tokens: 4, PromptTokens: 50,
				Chunks: []Chunk{{200 * ms, 1}, {250 * ms, 1}, {300 * ms, 2}}},
			{Stage: 2, Started: 320 * ms, Finished: 510 * ms, Tokens: 2, PromptTokens: 60, CachedTokens: 40,
				Chunks: []Chunk{{400 * ms, 1}, {500 * ms, 1}}},
		},
		VisionRuns: 1,
	}
}

func TestTimelineMetrics(t *testing.T) {
	tl := handmade()
	if d, ok := tl.TTFT(); !ok || d != 200*ms {
		t.Errorf("TTFT %v", d)
	}
	if tl.OutputTokens() != 6 || tl.PromptTokens() != 110 {
		t.Errorf("tokens %d prompt %d", tl.OutputTokens(), tl.PromptTokens())
	}
	// (600 − 200) / (6 − 1)
	if d, ok := tl.TPOT(); !ok || d != 80*ms {
		t.Errorf("TPOT %v", d)
	}
	itl := tl.ITLs()
	if len(itl) != 3 || itl[0] != 50*ms || itl[1] != 50*ms || itl[2] != 100*ms {
		t.Errorf("ITL %v (the 100 ms between stages is no ITL)", itl)
	}
	if d, ok := tl.StageTTFT(0); !ok || d != 200*ms {
		t.Errorf("stage 1 TTFT %v", d)
	}
	if d, ok := tl.StageTTFT(1); !ok || d != 90*ms {
		t.Errorf("stage 2 TTFT %v, want 400 − 310 ms", d)
	}
	if d, ok := tl.StageTPOT(0); !ok || d != 100*ms/3 {
		t.Errorf("stage 1 TPOT %v", d)
	}
	if d, ok := tl.StageTPOT(1); !ok || d != 100*ms {
		t.Errorf("stage 2 TPOT %v", d)
	}
	if d, ok := tl.ChainLatency(); !ok || d != 410*ms {
		t.Errorf("chain latency %v", d)
	}
	one := Timeline{E2E: 10 * ms, Stages: []StageTimeline{{Stage: 1, Tokens: 1, Chunks: []Chunk{{5 * ms, 1}}}}}
	if _, ok := one.TPOT(); ok {
		t.Error("TPOT of a one-token request")
	}
	if _, ok := (&Timeline{}).TTFT(); ok {
		t.Error("TTFT without tokens")
	}
}

func TestPercentileLikeNumpy(t *testing.T) {
	s := []float64{1, 2, 3, 4}
	// numpy.percentile([1, 2, 3, 4], [0, 50, 90, 99, 100])
	for p, want := range map[float64]float64{0: 1, 50: 2.5, 90: 3.7, 99: 3.97, 100: 4} {
		if got := Percentile(s, p); math.Abs(got-want) > 1e-12 {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("percentile of nothing")
	}
	st := Summarize([]float64{4, 1, 3, 2})
	if st.Count != 4 || st.Mean != 2.5 || st.Median != 2.5 || math.Abs(st.Std-math.Sqrt(1.25)) > 1e-12 || st.Min != 1 || st.Max != 4 || math.Abs(st.P99-3.97) > 1e-12 {
		t.Errorf("%+v", st)
	}
	if Summarize(nil) != (Stats{}) {
		t.Error("stats of nothing")
	}
}

func TestAggregateGoodputAndErrors(t *testing.T) {
	slow := handmade()
	slow.Stages[0].Chunks[0].At = 300 * ms // TTFT 300 ms
	failed := Timeline{Code: "UNAVAILABLE", Message: "connection refused", E2E: ms}
	r := Aggregate([]Timeline{handmade(), slow, failed}, 2*time.Second, SLO{TTFT: 250 * ms})
	if r.Completed != 2 || r.Failed != 1 || r.Errors["UNAVAILABLE"] != 1 || len(r.Requests) != 3 {
		t.Fatalf("%+v", r)
	}
	if r.Goodput == nil || *r.Goodput != 0.5 || r.RequestThroughput != 1 || r.ImagesPerS != 1 {
		t.Fatalf("goodput %v throughput %v", r.Goodput, r.RequestThroughput)
	}
	if r.OutputTokenThroughput != 6 || r.TotalTokenThroughput != (12+220)/2.0 {
		t.Fatalf("token throughput %v total %v", r.OutputTokenThroughput, r.TotalTokenThroughput)
	}
	if r.TTFT.Mean != 250 || r.TTFT.Count != 2 || r.E2E.Mean != 600 || r.ITL.Count != 6 {
		t.Fatalf("ttft %+v e2e %+v itl %+v", r.TTFT, r.E2E, r.ITL)
	}
	// Stage TTFTs 200 and 90 ms (300 and 90 for the slow one).
	if r.StageTTFT.Count != 4 || r.StageTTFT.Mean != (200+90+300+90)/4.0 {
		t.Fatalf("pooled stage TTFT %+v", r.StageTTFT)
	}
	if len(r.Stages) != 2 || r.Stages[1].TTFT.Mean != 90 || r.Stages[1].CachedTokens != 80 || r.Stages[0].Name != "localize" {
		t.Fatalf("stages %+v", r.Stages)
	}
	if r.PrefixCache.CachedTokens != 80 || r.PrefixCache.PromptTokens != 220 || math.Abs(r.PrefixCache.HitRatio-80.0/220) > 1e-12 {
		t.Fatalf("prefix cache %+v", r.PrefixCache)
	}
	// Both successful requests sent image 0: two encoder runs for one image.
	if r.Vision.Runs != 2 || r.Vision.RunsPerRequest != 1 || r.DistinctImages != 1 || r.Vision.RunsPerDistinctImage != 2 {
		t.Fatalf("vision %+v", r.Vision)
	}
	if r := Aggregate(nil, time.Second, SLO{}); r.Goodput != nil || r.Completed != 0 || r.RequestThroughput != 0 {
		t.Fatalf("empty %+v", r)
	}
}

func TestSLOGood(t *testing.T) {
	tl := handmade() // TTFT 200, TPOT 80, e2e 600 ms
	for _, c := range []struct {
		slo  SLO
		good bool
	}{
		{SLO{}, true},
		{SLO{TTFT: 200 * ms, TPOT: 80 * ms, E2E: 600 * ms}, true},
		{SLO{TTFT: 199 * ms}, false},
		{SLO{TPOT: 79 * ms}, false},
		{SLO{E2E: 599 * ms}, false},
	} {
		if c.slo.Good(&tl) != c.good {
			t.Errorf("%v: want good=%v", c.slo, c.good)
		}
	}
}
