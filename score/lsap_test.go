package score

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// bruteMin is the least total cost over all assignments of min(n, m) pairs.
func bruteMin(cost [][]float64) float64 {
	n, m := len(cost), len(cost[0])
	if n > m { // assign every column instead
		t := make([][]float64, m)
		for j := range t {
			t[j] = make([]float64, n)
			for i := range n {
				t[j][i] = cost[i][j]
			}
		}
		return bruteMin(t)
	}
	best := math.Inf(1)
	used := make([]bool, m)
	var walk func(i int, sum float64)
	walk = func(i int, sum float64) {
		if i == n {
			best = min(best, sum)
			return
		}
		for j := range m {
			if !used[j] {
				used[j] = true
				walk(i+1, sum+cost[i][j])
				used[j] = false
			}
		}
	}
	walk(0, 0)
	return best
}

// TestAssignIsOptimal checks the assignment's total against every
// assignment on random real-valued matrices up to 6×6.
func TestAssignIsOptimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		n, m := 1+rng.IntN(6), 1+rng.IntN(6)
		cost := make([][]float64, n)
		for i := range cost {
			cost[i] = make([]float64, m)
			for j := range cost[i] {
				cost[i][j] = rng.NormFloat64() * 100
			}
		}
		rows, cols, err := assign(cost)
		if err != nil || len(rows) != min(n, m) {
			t.Fatalf("assign: %v, %d pairs", err, len(rows))
		}
		sum, seenR, seenC := 0.0, map[int]bool{}, map[int]bool{}
		for k := range rows {
			if seenR[rows[k]] || seenC[cols[k]] || (k > 0 && rows[k] <= rows[k-1]) {
				t.Fatalf("not a sorted one-to-one assignment: %v %v", rows, cols)
			}
			seenR[rows[k]], seenC[cols[k]] = true, true
			sum += cost[rows[k]][cols[k]]
		}
		if want := bruteMin(cost); math.Abs(sum-want) > 1e-9*math.Abs(want) {
			t.Errorf("%v: total %v, the least is %v", cost, sum, want)
		}
	}
}

func TestMatchEntitiesBound(t *testing.T) {
	var b strings.Builder
	for i := range MaxEntities + 1 {
		fmt.Fprintf(&b, "%d | entity -->> (whole, thing)\n", i+1)
	}
	big, small := Parse(b.String(), false), Parse("1 | entity -->> (whole, thing)", false)
	if _, err := MatchEntities(big, small, noSynonyms{}, nil); err == nil || !strings.Contains(err.Error(), "more than 1000") {
		t.Errorf("error %v", err)
	}
}
