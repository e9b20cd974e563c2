package benchmarks

import (
	"fmt"

	dto "github.com/prometheus/client_model/go"
)

// specPrefix names the server's speculative-decoding counters, which the
// scrape keeps per stage as well as summed.
const specPrefix = "pancap_spec_decode_"

// The speculative-decoding counters, as vLLM's spec_decode ones.
const (
	specDrafts      = specPrefix + "num_drafts_total"          // verification steps
	specDraftTokens = specPrefix + "num_draft_tokens_total"    // draft tokens verified
	specAccepted    = specPrefix + "num_accepted_tokens_total" // draft tokens accepted
)

// specKey is the ServerMetrics key of counter name for one stage label.
func specKey(name, stage string) string { return fmt.Sprintf("%s{stage=%q}", name, stage) }

// labelValue returns the value of m's label name, "" when it has none.
func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// SpecStage is what speculative decoding did in one stage during a point,
// from the server's counters.
type SpecStage struct {
	Stage       string  // the metrics' stage label: localize … caption, generate
	Drafts      float64 // verification steps
	DraftTokens float64 // draft tokens verified
	Accepted    float64 // draft tokens accepted
}

// AcceptanceRate is the fraction of draft tokens accepted.
func (s SpecStage) AcceptanceRate() float64 { return s.Accepted / s.DraftTokens }

// TokensPerStep is the mean number of tokens a verification step emits: its
// accepted draft tokens and the one the verification logits give after
// them (vLLM's mean acceptance length).
func (s SpecStage) TokensPerStep() float64 { return 1 + s.Accepted/s.Drafts }

// SpecStages returns the stages that verified drafts during a point, in
// chain order, from its ServerMetrics.
func SpecStages(m map[string]float64) []SpecStage {
	var out []SpecStage
	for _, st := range []string{"localize", "tag", "discover", "caption", "generate"} {
		s := SpecStage{Stage: st, Drafts: m[specKey(specDrafts, st)],
			DraftTokens: m[specKey(specDraftTokens, st)], Accepted: m[specKey(specAccepted, st)]}
		if s.Drafts > 0 && s.DraftTokens > 0 {
			out = append(out, s)
		}
	}
	return out
}
