package benchmarks

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serverPrefix selects the server's own metrics among those of /metrics.
const serverPrefix = "pancap_"

// sample is one scrape: the summed value of every counter and the summed
// count and sum of every histogram of the server, by family name.
type sample struct {
	counters map[string]float64
	hists    map[string][2]float64 // count, sum
}

// scrapeTimeout bounds one scrape, so a hung server cannot hang the run.
const scrapeTimeout = 10 * time.Second

// scrape reads the Prometheus text exposition at url, sending token as a
// bearer token when it is set.
func scrape(ctx context.Context, url, token string) (sample, error) {
	s := sample{counters: map[string]float64{}, hists: map[string][2]float64{}}
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return s, fmt.Errorf("%w: metrics url %q: %w", ErrConfig, url, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return s, fmt.Errorf("scrape %s: %w", url, err)
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, serverPrefix) {
			continue
		}
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.counters[name] += m.GetCounter().GetValue()
				if strings.HasPrefix(name, specPrefix) {
					s.counters[specKey(name, labelValue(m, "stage"))] += m.GetCounter().GetValue()
				}
			case dto.MetricType_HISTOGRAM:
				h := s.hists[name]
				h[0] += float64(m.GetHistogram().GetSampleCount())
				h[1] += m.GetHistogram().GetSampleSum()
				s.hists[name] = h
			}
		}
	}
	return s, nil
}

// delta is what the server counted between two scrapes: every counter's
// increase (name as exposed; the speculative-decoding counters also per
// stage, see specKey), and every histogram's observations
// ("NAME:count") and mean ("NAME:mean", in the histogram's unit, seconds
// for *_seconds). Histograms without observations are left out.
func delta(before, after sample) map[string]float64 {
	out := map[string]float64{}
	for name, v := range after.counters {
		out[name] = v - before.counters[name]
	}
	for name, h := range after.hists {
		n := h[0] - before.hists[name][0]
		if n <= 0 {
			continue
		}
		out[name+":count"] = n
		out[name+":mean"] = (h[1] - before.hists[name][1]) / n
	}
	return out
}
