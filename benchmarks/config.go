package benchmarks

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// ErrConfig is wrapped by every error about a malformed option.
var ErrConfig = errors.New("bad benchmark option")

// Rate is a request rate in requests per second; Inf sends every request at
// once. In JSON it is a number, or the string "inf" as vLLM writes it.
type Rate float64

// Inf is the rate at which every request is sent at once.
var Inf = Rate(math.Inf(1))

// IsInf reports whether r sends every request at once.
func (r Rate) IsInf() bool { return math.IsInf(float64(r), 1) }

// String formats r as ParseRate reads it.
func (r Rate) String() string {
	if r.IsInf() {
		return "inf"
	}
	return strconv.FormatFloat(float64(r), 'g', -1, 64)
}

// MarshalJSON writes a number or "inf".
func (r Rate) MarshalJSON() ([]byte, error) {
	if r.IsInf() {
		return []byte(`"inf"`), nil
	}
	return json.Marshal(float64(r))
}

// UnmarshalJSON reads a number or "inf".
func (r *Rate) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := ParseRate(s)
		*r = v
		return err
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*r = Rate(f)
	return nil
}

// ParseRate reads "inf" or a positive number of requests per second.
func ParseRate(s string) (Rate, error) {
	if strings.EqualFold(strings.TrimSpace(s), "inf") {
		return Inf, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w: request rate %q: want a positive number or inf", ErrConfig, s)
	}
	return Rate(f), nil
}

// ParseRates reads a comma-separated list of rates.
func ParseRates(s string) ([]Rate, error) {
	var out []Rate
	for f := range strings.SplitSeq(s, ",") {
		r, err := ParseRate(f)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// DefaultOutputLens are SA-Pancap-like generated tokens per stage (DESIGN.md
// §7): localize 150, tag 200, discover 60, caption 450.
var DefaultOutputLens = LenDist{Lens: []int{150, 200, 60, 450}}

// LenDist is the distribution of the tokens each stage is asked to generate
// (max_new_tokens, exact with ignore_eos): Lens[i] for stage i+1 (a single
// value for every stage), each drawn uniformly from ±Spread of its value.
type LenDist struct {
	Lens   []int   `json:"lens"`   // per stage; one value applies to all
	Spread float64 `json:"spread"` // fraction in [0, 1): 0.1 draws from ±10%
}

// ParseLenDist reads "150,200,60,450" (fixed) or "150,200,60,450~10%"
// (uniform within ±10% of each value); one value applies to every stage.
func ParseLenDist(s string) (LenDist, error) {
	bad := func(why string) (LenDist, error) {
		return LenDist{}, fmt.Errorf("%w: output lengths %q: %s", ErrConfig, s, why)
	}
	var d LenDist
	list, spread, hasSpread := strings.Cut(s, "~")
	if hasSpread {
		p, ok := strings.CutSuffix(strings.TrimSpace(spread), "%")
		if !ok {
			return bad("the spread must end with %")
		}
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || !(f >= 0 && f < 100) {
			return bad("the spread must be in [0, 100)%")
		}
		d.Spread = f / 100
	}
	for f := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1<<20 {
			return bad("each length must be an integer in [1, 1048576]")
		}
		d.Lens = append(d.Lens, n)
	}
	if len(d.Lens) > 4 {
		return bad("at most 4 values, one per stage")
	}
	return d, nil
}

// String formats d as ParseLenDist reads it.
func (d LenDist) String() string {
	parts := make([]string, len(d.Lens))
	for i, n := range d.Lens {
		parts[i] = strconv.Itoa(n)
	}
	s := strings.Join(parts, ",")
	if d.Spread > 0 {
		s += "~" + strconv.FormatFloat(d.Spread*100, 'g', -1, 64) + "%"
	}
	return s
}

// Sample draws the lengths of stages 1..stages; it needs stages ≥ 1 and a
// non-empty d.Lens.
func (d LenDist) Sample(rng *rand.Rand, stages int) []int32 {
	out := make([]int32, stages)
	for i := range out {
		base := float64(d.Lens[min(i, len(d.Lens)-1)])
		v := base
		if d.Spread > 0 {
			v = base * (1 - d.Spread + 2*d.Spread*rng.Float64())
		}
		out[i] = int32(max(1, math.Round(v)))
	}
	return out
}

// SLO is a service-level objective for goodput: a request is good when it
// meets every bound that is set (0: unbounded).
type SLO struct {
	TTFT time.Duration `json:"ttft_ms"`
	TPOT time.Duration `json:"tpot_ms"`
	E2E  time.Duration `json:"e2e_ms"`
}

// MarshalJSON writes the bounds in milliseconds.
func (s SLO) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]float64{"ttft_ms": msOf(s.TTFT), "tpot_ms": msOf(s.TPOT), "e2e_ms": msOf(s.E2E)})
}

// UnmarshalJSON reads the bounds in milliseconds.
func (s *SLO) UnmarshalJSON(b []byte) error {
	var m map[string]float64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	*s = SLO{TTFT: ms(m["ttft_ms"]), TPOT: ms(m["tpot_ms"]), E2E: ms(m["e2e_ms"])}
	return nil
}

// Set reports whether any bound is set.
func (s SLO) Set() bool { return s.TTFT > 0 || s.TPOT > 0 || s.E2E > 0 }

// String formats s as ParseSLO reads it.
func (s SLO) String() string {
	var parts []string
	for _, b := range []struct {
		name string
		d    time.Duration
	}{{"ttft", s.TTFT}, {"tpot", s.TPOT}, {"e2e", s.E2E}} {
		if b.d > 0 {
			parts = append(parts, b.name+":"+strconv.FormatFloat(msOf(b.d), 'g', -1, 64))
		}
	}
	return strings.Join(parts, ",")
}

// Good reports whether the successful request t meets s.
func (s SLO) Good(t *Timeline) bool {
	if !t.OK() {
		return false
	}
	if s.TTFT > 0 {
		if d, ok := t.TTFT(); !ok || d > s.TTFT {
			return false
		}
	}
	if s.TPOT > 0 {
		if d, ok := t.TPOT(); ok && d > s.TPOT {
			return false
		}
	}
	return s.E2E == 0 || t.E2E <= s.E2E
}

// ParseSLO reads "ttft:MS,tpot:MS,e2e:MS" (any subset, any order, values in
// milliseconds > 0).
func ParseSLO(s string) (SLO, error) {
	var slo SLO
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(item), ":")
		f, err := strconv.ParseFloat(val, 64)
		if !ok || err != nil || !(f > 0) || f > 1e9 {
			return SLO{}, fmt.Errorf("%w: slo %q: want ttft:MS,tpot:MS,e2e:MS with positive milliseconds", ErrConfig, s)
		}
		d := time.Duration(math.Round(f * float64(time.Millisecond)))
		if d == 0 {
			return SLO{}, fmt.Errorf("%w: slo %q: %s below a nanosecond", ErrConfig, s, name)
		}
		switch name {
		case "ttft":
			slo.TTFT = d
		case "tpot":
			slo.TPOT = d
		case "e2e":
			slo.E2E = d
		default:
			return SLO{}, fmt.Errorf("%w: slo %q: unknown metric %q (ttft, tpot, e2e)", ErrConfig, s, name)
		}
		if seen[name] {
			return SLO{}, fmt.Errorf("%w: slo %q: %s given twice", ErrConfig, s, name)
		}
		seen[name] = true
	}
	return slo, nil
}

// ParseInts reads a comma-separated list of positive integers (e.g. the
// concurrencies of a sweep).
func ParseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%w: %q: want positive integers separated by commas", ErrConfig, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// gammaInterval draws the gap before the next arrival of a process with the
// given rate and burstiness, as vLLM does: Gamma(shape=burstiness,
// scale=1/(rate·burstiness)), so the mean gap is 1/rate whatever the
// burstiness; burstiness 1 is a Poisson process, below 1 burstier, above 1
// more regular.
func gammaInterval(rng *rand.Rand, rate Rate, burstiness float64) time.Duration {
	g := gamma(rng, burstiness) / (float64(rate) * burstiness)
	return time.Duration(g * float64(time.Second))
}

// gamma draws from Gamma(shape, 1) with Marsaglia and Tsang's method
// (boosted by U^(1/shape) for shape < 1).
func gamma(rng *rand.Rand, shape float64) float64 {
	if shape < 1 {
		return gamma(rng, shape+1) * math.Pow(rng.Float64(), 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if math.Log(u) < 0.5*x*x+d-d*v+d*math.Log(v) {
			return d * v
		}
	}
}
