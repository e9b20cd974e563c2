package benchmarks

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"inf": Inf, "INF": Inf, "2.5": 2.5, " 10 ": 10} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("%q: %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"0", "-1", "x", "", "NaN", "+Inf"} {
		if _, err := ParseRate(in); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v", in, err)
		}
	}
	rs, err := ParseRates("1,inf")
	if err != nil || len(rs) != 2 || !rs[1].IsInf() {
		t.Fatal(rs, err)
	}
	var back []Rate
	b, _ := json.Marshal(rs)
	if string(b) != `[1,"inf"]` || json.Unmarshal(b, &back) != nil || back[0] != 1 || !back[1].IsInf() {
		t.Fatalf("%s %v", b, back)
	}
}

func TestParseLenDist(t *testing.T) {
	d, err := ParseLenDist("150,200,60,450~10%")
	if err != nil || len(d.Lens) != 4 || d.Lens[3] != 450 || d.Spread != 0.1 || d.String() != "150,200,60,450~10%" {
		t.Fatalf("%+v %v", d, err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		s := d.Sample(rng, 4)
		if len(s) != 4 || s[0] < 135 || s[0] > 165 || s[3] < 405 || s[3] > 495 {
			t.Fatalf("sample %v outside ±10%%", s)
		}
	}
	one, err := ParseLenDist("32")
	if err != nil || one.String() != "32" {
		t.Fatal(one, err)
	}
	if s := one.Sample(rng, 3); s[0] != 32 || s[2] != 32 {
		t.Fatalf("one value for every stage: %v", s)
	}
	a, b := rand.New(rand.NewPCG(9, 9)), rand.New(rand.NewPCG(9, 9))
	if d.Sample(a, 4)[2] != d.Sample(b, 4)[2] {
		t.Fatal("equal seeds, different lengths")
	}
	for _, in := range []string{"", "1,2,3,4,5", "0", "a", "10~", "10~5", "10~100%", "10~-1%"} {
		if _, err := ParseLenDist(in); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestParseSLO(t *testing.T) {
	s, err := ParseSLO("ttft:500,tpot:50,e2e:20000")
	if err != nil || s.TTFT != 500*time.Millisecond || s.TPOT != 50*time.Millisecond || s.E2E != 20*time.Second {
		t.Fatal(s, err)
	}
	if s.String() != "ttft:500,tpot:50,e2e:20000" {
		t.Fatal(s.String())
	}
	var back SLO
	b, _ := json.Marshal(s)
	if json.Unmarshal(b, &back) != nil || back != s {
		t.Fatalf("%s", b)
	}
	for _, in := range []string{"", "ttft", "ttft:", "ttft:0", "ttft:-5", "latency:5", "ttft:5,ttft:6", "ttft:1e-9"} {
		if _, err := ParseSLO(in); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestParseInts(t *testing.T) {
	if v, err := ParseInts("1, 2,8"); err != nil || len(v) != 3 || v[2] != 8 {
		t.Fatal(v, err)
	}
	for _, in := range []string{"", "0", "1,,2", "x"} {
		if _, err := ParseInts(in); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// TestGammaIntervals checks the mean (1/rate) and the variance
// (1/(rate²·burstiness)) of the arrival gaps.
func TestGammaIntervals(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, rate = 20000, 4.0
	for _, burst := range []float64{0.5, 1, 3} {
		var sum, sq float64
		for range n {
			g := gammaInterval(rng, rate, burst).Seconds()
			sum += g
			sq += g * g
		}
		mean := sum / n
		variance := sq/n - mean*mean
		if math.Abs(mean-1/rate) > 0.05/rate {
			t.Errorf("burstiness %v: mean gap %v, want %v", burst, mean, 1/rate)
		}
		if want := 1 / (rate * rate * burst); math.Abs(variance-want) > 0.15*want {
			t.Errorf("burstiness %v: variance %v, want %v", burst, variance, want)
		}
	}
}
