package sample

import (
	"cmp"
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestValidate(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	tests := []struct {
		p     Params
		field string // "" when valid
	}{
		{Params{}, ""},
		{Params{Temperature: 0.7, TopP: 0.9, TopK: 50, Seed: 1}, ""},
		{Params{Temperature: 1, TopP: 1}, ""},
		{Params{Temperature: -0.1}, "temperature"},
		{Params{Temperature: nan}, "temperature"},
		{Params{Temperature: inf}, "temperature"},
		{Params{TopP: -0.1}, "top_p"},
		{Params{TopP: 1.01}, "top_p"},
		{Params{TopP: nan}, "top_p"},
		{Params{TopK: -1}, "top_k"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if tt.field == "" {
			if err != nil {
				t.Errorf("%+v: unexpected error %v", tt.p, err)
			}
			continue
		}
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Field != tt.field || !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%+v: error %v, want a ParamError on %s wrapping ErrInvalidParams", tt.p, err, tt.field)
		}
		if _, err := New(tt.p); err == nil {
			t.Errorf("New(%+v) accepted invalid params", tt.p)
		}
	}
	err := Params{Temperature: -1}.Validate()
	if got, want := err.Error(), "temperature: must be finite and >= 0, got -1"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

func TestArgmax(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	tests := []struct {
		in   []float32
		want int32
	}{
		{[]float32{1}, 0},
		{[]float32{1, 3, 2}, 1},
		{[]float32{5, 5, 5}, 0},
		{[]float32{1, 7, 3, 7}, 1},
		{[]float32{-inf, -inf}, 0},
		{[]float32{1, inf, 2}, 1},
		{[]float32{1, nan, 9, nan}, 1},
		{[]float32{nan, 9}, 0},
	}
	for _, tt := range tests {
		if got := Argmax(tt.in); got != tt.want {
			t.Errorf("Argmax(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// logitsRow is a small fixed row with distinct values.
var logitsRow = []float32{0.5, 2.0, -1.0, 1.5, 0.0, 1.9, -3.0, 1.0}

func mustNew(t *testing.T, p Params) *Sampler {
	t.Helper()
	s, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGreedyIgnoresSeedAndTopK(t *testing.T) {
	s := mustNew(t, Params{TopK: 3, TopP: 0.5, Seed: 42})
	for range 10 {
		if got := s.Next(logitsRow); got != 1 {
			t.Fatalf("greedy Next = %d, want 1", got)
		}
	}
}

func TestTopKOneIsGreedy(t *testing.T) {
	s := mustNew(t, Params{Temperature: 5, TopK: 1, Seed: 7})
	for range 200 {
		if got := s.Next(logitsRow); got != 1 {
			t.Fatalf("top_k=1 Next = %d, want 1", got)
		}
	}
}

func TestTinyTopPIsGreedy(t *testing.T) {
	s := mustNew(t, Params{Temperature: 3, TopP: 1e-6, Seed: 7})
	for range 200 {
		if got := s.Next(logitsRow); got != 1 {
			t.Fatalf("tiny top_p Next = %d, want 1", got)
		}
	}
}

// frequencies draws n tokens from row and returns their relative counts.
func frequencies(t *testing.T, p Params, row []float32, n int) []float64 {
	t.Helper()
	s := mustNew(t, p)
	f := make([]float64, len(row))
	for range n {
		f[s.Next(row)]++
	}
	for i := range f {
		f[i] /= float64(n)
	}
	return f
}

// softmax of row/temp over the ids in keep (all when nil).
func softmax(row []float32, temp float64, keep map[int]bool) []float64 {
	p := make([]float64, len(row))
	sum := 0.0
	for i, v := range row {
		if keep == nil || keep[i] {
			p[i] = math.Exp(float64(v) / temp)
			sum += p[i]
		}
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

func checkClose(t *testing.T, got, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		if math.Abs(got[i]-want[i]) > tol {
			t.Errorf("token %d: frequency %.4f, want %.4f ± %.3f (all %v)", i, got[i], want[i], tol, got)
		}
	}
}

func TestTemperatureMatchesSoftmax(t *testing.T) {
	const n = 20000
	for _, temp := range []float64{0.7, 1, 2} {
		got := frequencies(t, Params{Temperature: float32(temp), Seed: 1}, logitsRow, n)
		checkClose(t, got, softmax(logitsRow, temp, nil), 0.015)
	}
}

func TestTopKMatchesRenormalisedSoftmax(t *testing.T) {
	got := frequencies(t, Params{Temperature: 1, TopK: 3, Seed: 2}, logitsRow, 20000)
	// the three largest: ids 1 (2.0), 5 (1.9), 3 (1.5)
	checkClose(t, got, softmax(logitsRow, 1, map[int]bool{1: true, 5: true, 3: true}), 0.015)
}

func TestTopKKeepsTies(t *testing.T) {
	row := []float32{1, 3, 3, 0, 3}
	got := frequencies(t, Params{Temperature: 1, TopK: 2, Seed: 3}, row, 6000)
	checkClose(t, got, []float64{0, 1. / 3, 1. / 3, 0, 1. / 3}, 0.03)
}

func TestTopPMatchesNucleus(t *testing.T) {
	// softmax(logitsRow) sorted: id1 .282, id5 .255, id3 .171, id7 .104, ...
	// top_p 0.6: .282+.255 = .537 < .6, adding id3 reaches .708 → {1, 5, 3}.
	probs := softmax(logitsRow, 1, nil)
	if c := probs[1] + probs[5]; c >= 0.6 || c+probs[3] < 0.6 {
		t.Fatalf("test row no longer splits at 0.6: %v", probs)
	}
	got := frequencies(t, Params{Temperature: 1, TopP: 0.6, Seed: 4}, logitsRow, 20000)
	checkClose(t, got, softmax(logitsRow, 1, map[int]bool{1: true, 5: true, 3: true}), 0.015)
}

func TestTopKThenTopP(t *testing.T) {
	// top_k 4 keeps {1, 5, 3, 7}; renormalised, id1 .346 + id5 .313 = .659
	// reaches 0.65 → {1, 5}.
	got := frequencies(t, Params{Temperature: 1, TopK: 4, TopP: 0.65, Seed: 5}, logitsRow, 20000)
	checkClose(t, got, softmax(logitsRow, 1, map[int]bool{1: true, 5: true}), 0.015)
}

func TestSeedDeterminism(t *testing.T) {
	draw := func(seed uint64) []int32 {
		s := mustNew(t, Params{Temperature: 1.5, TopP: 0.95, Seed: seed})
		out := make([]int32, 64)
		for i := range out {
			out[i] = s.Next(logitsRow)
		}
		return out
	}
	a, b, c := draw(9), draw(9), draw(10)
	same := true
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed diverged at draw %d", i)
		}
		same = same && a[i] == c[i]
	}
	if same {
		t.Error("seeds 9 and 10 gave the same 64 draws")
	}
}

func TestExcludedLogits(t *testing.T) {
	ninf, nan := float32(math.Inf(-1)), float32(math.NaN())
	s := mustNew(t, Params{Temperature: 1, Seed: 1})
	for range 100 {
		if got := s.Next([]float32{ninf, 0, nan, ninf}); got != 1 {
			t.Fatalf("Next = %d, want the only finite id 1", got)
		}
	}
	if got := s.Next([]float32{ninf, nan, ninf}); got != 1 {
		t.Errorf("all excluded: Next = %d, want Argmax's 1", got)
	}
	inf := float32(math.Inf(1))
	for range 100 {
		if got := s.Next([]float32{0, inf, 5, inf}); got != 1 && got != 3 {
			t.Fatalf("Next = %d, want one of the +Inf ids", got)
		}
	}
}

func TestNextDoesNotAllocate(t *testing.T) {
	row := make([]float32, 1000)
	for i := range row {
		row[i] = float32(math.Sin(float64(i)))
	}
	for _, p := range []Params{{}, {Temperature: 1}, {Temperature: 0.8, TopK: 40}, {Temperature: 0.8, TopP: 0.9}, {Temperature: 1, TopK: 100, TopP: 0.5}} {
		s := mustNew(t, p)
		s.Next(row)
		if a := testing.AllocsPerRun(20, func() { s.Next(row) }); a != 0 {
			t.Errorf("%+v: %v allocations per Next", p, a)
		}
	}
}

func BenchmarkNext(b *testing.B) {
	row := make([]float32, 32000)
	for i := range row {
		row[i] = float32(math.Sin(float64(i) * 0.37))
	}
	for _, bc := range []struct {
		name string
		p    Params
	}{
		{"greedy", Params{}},
		{"temperature", Params{Temperature: 0.8}},
		{"top_k", Params{Temperature: 0.8, TopK: 50}},
		{"top_p", Params{Temperature: 0.8, TopP: 0.9}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(bc.p)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				s.Next(row)
			}
		})
	}
}

// TestTopPMatchesFullSort checks the partial sort of topP against the
// warper's definition on random rows: sort everything ascending, drop the
// prefix whose cumulative probability is <= 1−p, keep the last always.
func TestTopPMatchesFullSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		n := 1 + rng.IntN(60)
		row := make([]float32, n)
		for i := range row {
			row[i] = float32(rng.NormFloat64() * (0.2 + 3*rng.Float64()))
		}
		p := rng.Float64()
		s := mustNew(t, Params{Temperature: 1, TopP: float32(p)})
		s.Next(row) // sizes the scratch
		cand := make([]int32, n)
		for i := range cand {
			cand[i] = int32(i)
		}
		total := s.pick.weigh(cand)
		kept, _, _ := s.pick.topP(cand, total, p)
		got := map[int32]bool{}
		for _, id := range kept {
			got[id] = true
		}

		order := make([]int32, n)
		for i := range order {
			order[i] = int32(i)
		}
		slices.SortFunc(order, func(a, b int32) int {
			return cmp.Or(cmp.Compare(row[a], row[b]), cmp.Compare(a, b))
		})
		want, cum := map[int32]bool{}, 0.0
		for i, id := range order {
			cum += float64(s.pick.wt[id]) / total
			if cum > 1-p || i == n-1 {
				for _, k := range order[i:] {
					want[k] = true
				}
				break
			}
		}
		if !maps.Equal(got, want) {
			t.Fatalf("trial %d (p %.3f, row %v): kept %v, want %v", trial, p, row, got, want)
		}
	}
}
