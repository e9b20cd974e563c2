package score

import (
	"errors"
	"math"
	"sort"
)

// errInvalidCost is scipy's "matrix contains invalid numeric entries".
var errInvalidCost = errors.New("score: cost matrix contains NaN or -Inf")

// assign solves the rectangular linear sum assignment problem on an n×m
// cost matrix (rows of equal length): min(n, m) pairs (row, column), each
// row and column used at most once, of least total cost, returned sorted by
// row. It is the shortest augmenting path method of Crouse (2016) that
// scipy.optimize.linear_sum_assignment uses, with the same visiting order
// and tie-breaking, so that among several optimal assignments it picks
// scipy's: which entity is paired with which decides the entity IDs in the
// questions the judge answers.
func assign(cost [][]float64) (rows, cols []int, err error) {
	nr := len(cost)
	if nr == 0 || len(cost[0]) == 0 {
		return nil, nil, nil
	}
	nc := len(cost[0])
	transpose := nc < nr
	c := make([]float64, nr*nc) // row-major, rows ≤ columns
	for i, row := range cost {
		for j, v := range row {
			if v != v || math.IsInf(v, -1) {
				return nil, nil, errInvalidCost
			}
			if transpose {
				c[j*nr+i] = v
			} else {
				c[i*nc+j] = v
			}
		}
	}
	if transpose {
		nr, nc = nc, nr
	}
	col4row, err := solveLSAP(nr, nc, c)
	if err != nil {
		return nil, nil, err
	}
	rows, cols = make([]int, nr), make([]int, nr)
	if !transpose {
		for i := range nr {
			rows[i], cols[i] = i, col4row[i]
		}
		return rows, cols, nil
	}
	order := make([]int, nr)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return col4row[order[a]] < col4row[order[b]] })
	for k, v := range order {
		rows[k], cols[k] = col4row[v], v
	}
	return rows, cols, nil
}

// lsapState holds the work arrays of solveLSAP.
type lsapState struct {
	nr, nc        int
	cost          []float64
	u, v, spc     []float64 // row and column duals, shortest path costs
	path, row4col []int
	col4row       []int
	sr, sc        []bool
	remaining     []int
}

// solveLSAP assigns every row of an nr×nc matrix (nr ≤ nc) to a column.
func solveLSAP(nr, nc int, cost []float64) ([]int, error) {
	s := &lsapState{nr: nr, nc: nc, cost: cost,
		u: make([]float64, nr), v: make([]float64, nc), spc: make([]float64, nc),
		path: make([]int, nc), row4col: make([]int, nc), col4row: make([]int, nr),
		sr: make([]bool, nr), sc: make([]bool, nc), remaining: make([]int, nc)}
	for j := range nc {
		s.path[j], s.row4col[j] = -1, -1
	}
	for i := range nr {
		s.col4row[i] = -1
	}
	for cur := range nr {
		sink, minVal := s.augmentingPath(cur)
		if sink < 0 {
			return nil, errors.New("score: cost matrix is infeasible")
		}
		s.u[cur] += minVal
		for i := range nr {
			if s.sr[i] && i != cur {
				s.u[i] += minVal - s.spc[s.col4row[i]]
			}
		}
		for j := range nc {
			if s.sc[j] {
				s.v[j] -= minVal - s.spc[j]
			}
		}
		for j := sink; ; {
			i := s.path[j]
			s.row4col[j] = i
			s.col4row[i], j = j, s.col4row[i]
			if i == cur {
				break
			}
		}
	}
	return s.col4row, nil
}

// augmentingPath finds the shortest augmenting path from row i; it returns
// the free column it ends at (-1 when none is reachable) and its length.
func (s *lsapState) augmentingPath(i int) (int, float64) {
	minVal := 0.0
	// Columns are visited from the last: a constant matrix then gives
	// the identity, as in scipy.
	n := s.nc
	for k := range n {
		s.remaining[k] = s.nc - k - 1
	}
	clear(s.sr)
	clear(s.sc)
	for j := range s.spc {
		s.spc[j] = math.Inf(1)
	}
	for {
		index, lowest := -1, math.Inf(1)
		s.sr[i] = true
		for k := range n {
			j := s.remaining[k]
			r := minVal + s.cost[i*s.nc+j] - s.u[i] - s.v[j]
			if r < s.spc[j] {
				s.path[j] = i
				s.spc[j] = r
			}
			// Among equal costs prefer a free column: it ends the path.
			if s.spc[j] < lowest || (s.spc[j] == lowest && s.row4col[j] == -1) {
				lowest = s.spc[j]
				index = k
			}
		}
		minVal = lowest
		if math.IsInf(minVal, 1) {
			return -1, 0
		}
		j := s.remaining[index]
		s.sc[j] = true
		n--
		s.remaining[index] = s.remaining[n]
		if s.row4col[j] == -1 {
			return j, minVal
		}
		i = s.row4col[j]
	}
}
