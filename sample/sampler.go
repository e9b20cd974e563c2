package sample

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/pancap-serve/pancap/kernels/cpu/linalg"
)

// pcgStream is the second word of the PCG state; the request's Seed is the
// first, so equal seeds give equal streams.
const pcgStream = 0x9e3779b97f4a7c15

// Sampler picks tokens for one sequence: its Params, its own PCG source
// seeded by Params.Seed, and the rule (Picker). Temperature 0 is greedy
// (Argmax) whatever top-k and top-p say and takes nothing from the source;
// every other token takes exactly one number from it (Uniform). A Sampler
// is not safe for concurrent use; after the first call with a given vocab
// size Next allocates nothing.
type Sampler struct {
	p    Params
	rng  *rand.Rand
	pick Picker
}

// New returns a Sampler for p, or p.Validate's error.
func New(p Params) (*Sampler, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Sampler{p: p, rng: rand.New(rand.NewPCG(p.Seed, pcgStream))}, nil
}

// Params returns the parameters the Sampler was built with.
func (s *Sampler) Params() Params { return s.p }

// Next returns the next token for a row of logits ([vocab]): Argmax when
// greedy, else Picker.Pick at the stream's next number. It panics on an
// empty row.
func (s *Sampler) Next(logits []float32) int32 {
	if s.p.Greedy() {
		return Argmax(logits)
	}
	return s.pick.Pick(logits, s.p, s.Uniform())
}

// Uniform takes the stream's next number in [0, 1), the one Next would
// draw at, for an engine that picks the token itself (engine.Sampling).
func (s *Sampler) Uniform() float64 { return s.rng.Float64() }

// Picker is the sampling rule without a random source. It applies, as
// Hugging Face's generate does, temperature, then top-k
// (TopKLogitsWarper), then top-p (TopPLogitsWarper), each keeping at least
// one token, and draws from the softmax of what is left at a given number
// u: the candidates in ascending id order (by ascending probability, then
// id, once top-p has cut), the first whose cumulative weight exceeds u
// times their total. The CUDA backend's pick kernel mirrors it. A Picker
// is not safe for concurrent use; after the first call with a given vocab
// size Pick allocates nothing.
type Picker struct {
	val  []float32 // [vocab] logits / temperature; -Inf when excluded
	cand []int32   // [vocab] capacity: ids still in the running, increasing
	all  []int32   // [vocab] every id: cand when nothing is excluded
	cval []float32 // [len(cand)] their values, gathered when not every id
	wt   []float32 // [len(cand)] exp(val − max) of cand[i]
	heap []float32 // [top_k] min-heap of the largest values
	keys []uint64  // top-p sort keys: value bits, then position in cand
	hid  []int32   // top-p's heavy candidates, ascending
	hwt  []float32 // and their weights
}

// Pick returns the token for a row of logits ([vocab]) under p, the draw
// falling at u in [0, 1): Argmax when p is greedy (u unused). It panics on
// an empty row. NaN logits never win a draw; when every logit is -Inf or
// NaN, Pick falls back to Argmax.
func (s *Picker) Pick(logits []float32, p Params, u float64) int32 {
	if p.Greedy() {
		return Argmax(logits)
	}
	if len(logits) == 0 {
		panic("sample: empty logits")
	}
	n := len(logits)
	if cap(s.val) < n {
		s.val, s.cval, s.wt, s.hwt = make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
		s.cand, s.hid, s.all = make([]int32, 0, n), make([]int32, n), make([]int32, n)
		for i := range s.all {
			s.all[i] = int32(i)
		}
	}
	negInf := float32(math.Inf(-1))
	k := p.TopK
	listed := k > 0 && k < n // a list of its own, which topK shortens in place
	val, cand, excluded := s.val[:n], s.cand[:0], 0
	for i, v := range logits {
		// as TemperatureLogitsWarper: a division, not a reciprocal
		v /= p.Temperature
		if v != v { // NaN
			v = negInf
		}
		val[i] = v
		if v == negInf {
			excluded++
		} else if listed {
			cand = append(cand, int32(i))
		}
	}
	switch {
	case excluded == n:
		return Argmax(logits)
	case listed:
	case excluded == 0:
		cand = s.all[:n]
	default:
		for i, v := range val {
			if v != negInf {
				cand = append(cand, int32(i))
			}
		}
	}
	if k > 0 && k < len(cand) {
		cand = s.topK(cand, k)
	}
	total := s.weigh(cand)
	wt := s.wt[:len(cand)]
	if topP := float64(p.TopP); topP > 0 && topP < 1 {
		cand, wt, total = s.topP(cand, total, topP)
	}
	return draw(cand, wt, u*total)
}

// topK keeps the candidates whose value is at least the k-th largest, as
// TopKLogitsWarper does (ties with the k-th value all stay).
func (s *Picker) topK(cand []int32, k int) []int32 {
	if cap(s.heap) < k {
		s.heap = make([]float32, 0, k)
	}
	h := s.heap[:0]
	for _, id := range cand {
		v := s.val[id]
		switch {
		case len(h) < k:
			h = append(h, v)
			siftUp(h, len(h)-1)
		case v > h[0]:
			h[0] = v
			siftDown(h, 0)
		}
	}
	s.heap = h
	threshold := h[0] // the k-th largest value
	kept := cand[:0]
	for _, id := range cand {
		if s.val[id] >= threshold {
			kept = append(kept, id)
		}
	}
	return kept
}

// weigh sets wt[i] = exp(val[cand[i]] − max) for the candidates (vector
// exponentials where the CPU has them) and returns their sum. The maximum
// itself weighs 1, so +Inf logits share the mass equally instead of giving
// NaN.
func (s *Picker) weigh(cand []int32) float64 {
	vals := s.val // every id is a candidate: cand[i] == i
	if len(cand) < len(s.val) {
		vals = s.cval[:len(cand)]
		for i, id := range cand {
			vals[i] = s.val[id]
		}
	}
	maxv := maximum(vals)
	wt := s.wt[:len(cand)]
	if math.IsInf(float64(maxv), 1) || !linalg.ExpShift(wt, vals, maxv) {
		for i, v := range vals {
			w := 1.0
			if v != maxv {
				w = math.Exp(float64(v) - float64(maxv))
			}
			wt[i] = float32(w)
		}
	}
	return sum(wt)
}

// maximum is the largest of xs (no NaN among them), in four running
// maxima for the pipelines.
func maximum(xs []float32) float32 {
	m := [4]float32{xs[0], xs[0], xs[0], xs[0]}
	i := 0
	for ; i+4 <= len(xs); i += 4 {
		for j := range m {
			if xs[i+j] > m[j] {
				m[j] = xs[i+j]
			}
		}
	}
	for ; i < len(xs); i++ {
		m[0] = max(m[0], xs[i])
	}
	return max(max(m[0], m[1]), max(m[2], m[3]))
}

// sum is the float64 sum of xs, in four running sums (elements i ≡ j mod
// 4 in sum j, the tail in sum 0) added as (s0+s1)+(s2+s3).
func sum(xs []float32) float64 {
	var s [4]float64
	i := 0
	for ; i+4 <= len(xs); i += 4 {
		for j := range s {
			s[j] += float64(xs[i+j])
		}
	}
	for ; i < len(xs); i++ {
		s[0] += float64(xs[i])
	}
	return (s[0] + s[1]) + (s[2] + s[3])
}

// topP keeps the smallest set of most likely candidates whose probability
// reaches p, as TopPLogitsWarper does: in ascending order, the candidates
// whose cumulative probability is <= 1−p are dropped, the most likely one
// never. It returns the kept candidates, in ascending order, their weights
// and their total weight.
//
// Only part of the list is sorted: the candidates lighter than
// (1−p)·total/n weigh at most (1−p)·total together, so they all belong to
// the dropped prefix whatever their order.
func (s *Picker) topP(cand []int32, total, p float64) ([]int32, []float32, float64) {
	limit := (1 - p) * total
	light := limit / float64(len(cand))
	if cap(s.keys) < len(cand) {
		s.keys = make([]uint64, 0, cap(s.cand))
	}
	keys, cum := s.keys[:0], 0.0
	for i, id := range cand {
		if w := float64(s.wt[i]); w < light {
			cum += w
		} else {
			keys = append(keys, uint64(orderedBits(s.val[id]))<<32|uint64(uint32(i)))
		}
	}
	slices.Sort(keys) // ascending by value, then by id (positions follow ids)
	hid, hwt := s.hid[:len(keys)], s.hwt[:len(keys)]
	for i, k := range keys {
		hid[i], hwt[i] = cand[uint32(k)], s.wt[uint32(k)]
	}
	cut := 0
	for ; cut < len(hid)-1; cut++ {
		if cum+float64(hwt[cut]) > limit {
			break
		}
		cum += float64(hwt[cut])
	}
	return hid[cut:], hwt[cut:], sum(hwt[cut:])
}

// orderedBits maps a float32 to a uint32 of the same order (−0 just
// below +0), so sorting packed keys sorts by value.
func orderedBits(v float32) uint32 {
	b := math.Float32bits(v)
	if b>>31 == 1 {
		return ^b
	}
	return b | 1<<31
}

// draw returns the first candidate whose cumulative weight exceeds u (in
// [0, total)): one with probability proportional to its weight when u is
// uniform.
func draw(cand []int32, wt []float32, u float64) int32 {
	for i, id := range cand {
		u -= float64(wt[i])
		if u < 0 {
			return id
		}
	}
	return cand[len(cand)-1] // rounding left u a hair above zero
}

// Argmax returns the index of the largest logit, the lowest index among
// equals, as torch.argmax does; like torch.argmax, a NaN counts as the
// largest value (the first NaN wins). It panics on an empty row.
func Argmax(logits []float32) int32 {
	if len(logits) == 0 {
		panic("sample: empty logits")
	}
	best, bestV := 0, logits[0]
	if bestV != bestV {
		return 0
	}
	for i, v := range logits[1:] {
		if v != v {
			return int32(i + 1)
		}
		if v > bestV {
			best, bestV = i+1, v
		}
	}
	return int32(best)
}

// siftUp restores the min-heap property of h after h[i] was set.
func siftUp(h []float32, i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent] <= h[i] {
			return
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
}

// siftDown restores the min-heap property of h after h[i] was raised.
func siftDown(h []float32, i int) {
	for {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l] < h[least] {
			least = l
		}
		if r < len(h) && h[r] < h[least] {
			least = r
		}
		if least == i {
			return
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
}
