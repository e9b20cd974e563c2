package benchmarks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestSpecStagesFromScrape: the speculative-decoding counters are kept per
// stage through scrape and delta, and the report gives each stage's
// acceptance rate and tokens per verification step.
func TestSpecStagesFromScrape(t *testing.T) {
	exposition := func(tagDrafts, tagAccepted float64) string {
		var b strings.Builder
		fmt.Fprintln(&b, "# TYPE pancap_spec_decode_num_drafts_total counter")
		fmt.Fprintf(&b, "pancap_spec_decode_num_drafts_total{stage=\"tag\"} %g\n", tagDrafts/4)
		fmt.Fprintln(&b, "pancap_spec_decode_num_drafts_total{stage=\"caption\"} 10")
		fmt.Fprintln(&b, "# TYPE pancap_spec_decode_num_draft_tokens_total counter")
		fmt.Fprintf(&b, "pancap_spec_decode_num_draft_tokens_total{stage=\"tag\"} %g\n", tagDrafts)
		fmt.Fprintln(&b, "pancap_spec_decode_num_draft_tokens_total{stage=\"caption\"} 40")
		fmt.Fprintln(&b, "# TYPE pancap_spec_decode_num_accepted_tokens_total counter")
		fmt.Fprintf(&b, "pancap_spec_decode_num_accepted_tokens_total{stage=\"tag\"} %g\n", tagAccepted)
		fmt.Fprintln(&b, "pancap_spec_decode_num_accepted_tokens_total{stage=\"caption\"} 5")
		return b.String()
	}
	body := exposition(100, 50)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
	defer srv.Close()
	before, err := scrape(context.Background(), srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	body = exposition(500, 410)
	after, err := scrape(context.Background(), srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	d := delta(before, after)
	if got := d[specDraftTokens]; got != 400 {
		t.Errorf("summed draft tokens %g, want 400", got)
	}
	spec := SpecStages(d)
	if len(spec) != 1 || spec[0].Stage != "tag" {
		t.Fatalf("stages %+v, want tag alone (caption's counters did not move)", spec)
	}
	if s := spec[0]; s.AcceptanceRate() != 0.9 || s.TokensPerStep() != 1+360.0/100 {
		t.Errorf("tag: acceptance %g, tokens per step %g; want 0.9 and 4.6", s.AcceptanceRate(), s.TokensPerStep())
	}
	var out strings.Builder
	if err := WriteTable(&out, &Result{Runs: []RunResult{{ServerMetrics: d}}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Speculative decoding") || !strings.Contains(out.String(), "      90.0       4.60") {
		t.Errorf("report lacks the tag stage's acceptance:\n%s", out.String())
	}
}
