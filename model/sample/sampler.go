package sample

import (
	"math"
	"math/rand/v2"
	"slices"
)

// pcgStream is the second word of the PCG state; the request's Seed is the
// first, so equal seeds give equal streams.
const pcgStream = 0x9e3779b97f4a7c15

// Sampler picks tokens for one sequence. It applies, as Hugging Face's
// generate does, temperature, then top-k (TopKLogitsWarper), then top-p
// (TopPLogitsWarper), each keeping at least one token, and draws from the
// softmax of what is left with its own PCG source seeded by Params.Seed.
// Temperature 0 is greedy (Argmax) whatever top-k and top-p say. A Sampler
// is not safe for concurrent use; after the first call with a given vocab
// size Next allocates nothing.
type Sampler struct {
	p    Params
	rng  *rand.Rand
	val  []float32 // [vocab] logits / temperature; -Inf when excluded
	wt   []float64 // [vocab] exp(val − max) of the candidates
	cand []int32   // ids still in the running
	heap []float32 // [top_k] min-heap of the largest values
	keys []uint64  // [vocab] sort keys of top-p: value bits, then id
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

// Next returns the next token for a row of logits ([vocab]). It panics on
// an empty row. NaN logits never win a draw; when every logit is -Inf or
// NaN, Next falls back to Argmax.
func (s *Sampler) Next(logits []float32) int32 {
	if s.p.Greedy() {
		return Argmax(logits)
	}
	if len(logits) == 0 {
		panic("sample: empty logits")
	}
	if cap(s.val) < len(logits) {
		s.val = make([]float32, len(logits))
		s.wt = make([]float64, len(logits))
		s.cand = make([]int32, 0, len(logits))
	}
	val, cand := s.val[:len(logits)], s.cand[:0]
	for i, v := range logits {
		// as TemperatureLogitsWarper: a division, not a reciprocal
		v /= s.p.Temperature
		if v != v { // NaN
			v = float32(math.Inf(-1))
		}
		val[i] = v
		if !math.IsInf(float64(v), -1) {
			cand = append(cand, int32(i))
		}
	}
	s.cand = cand
	if len(cand) == 0 {
		return Argmax(logits)
	}
	if k := s.p.TopK; k > 0 && k < len(cand) {
		cand = s.topK(cand, k)
	}
	total := s.weigh(cand)
	if p := float64(s.p.TopP); p > 0 && p < 1 {
		cand, total = s.topP(cand, total, p)
	}
	return s.draw(cand, total)
}

// topK keeps the candidates whose value is at least the k-th largest, as
// TopKLogitsWarper does (ties with the k-th value all stay).
func (s *Sampler) topK(cand []int32, k int) []int32 {
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

// weigh sets wt[id] = exp(val[id] − max) for the candidates and returns
// their sum. The maximum itself weighs 1, so +Inf logits share the mass
// equally instead of giving NaN.
func (s *Sampler) weigh(cand []int32) float64 {
	maxv := s.val[cand[0]]
	for _, id := range cand[1:] {
		maxv = max(maxv, s.val[id])
	}
	total := 0.0
	for _, id := range cand {
		w := 1.0
		if v := s.val[id]; v != maxv {
			w = math.Exp(float64(v) - float64(maxv))
		}
		s.wt[id] = w
		total += w
	}
	return total
}

// topP keeps the smallest set of most likely candidates whose probability
// reaches p, as TopPLogitsWarper does: in ascending order, the candidates
// whose cumulative probability is <= 1−p are dropped, the most likely one
// never. It returns the kept candidates and their total weight.
//
// Only part of the list is sorted: the candidates lighter than
// (1−p)·total/n weigh at most (1−p)·total together, so they all belong to
// the dropped prefix whatever their order.
func (s *Sampler) topP(cand []int32, total, p float64) ([]int32, float64) {
	limit := (1 - p) * total
	light := limit / float64(len(cand))
	if cap(s.keys) < len(cand) {
		s.keys = make([]uint64, 0, cap(s.cand))
	}
	keys, cum := s.keys[:0], 0.0
	for _, id := range cand {
		if s.wt[id] < light {
			cum += s.wt[id]
		} else {
			keys = append(keys, uint64(orderedBits(s.val[id]))<<32|uint64(uint32(id)))
		}
	}
	slices.Sort(keys) // ascending by value, then by id
	heavy := cand[:len(keys)]
	for i, k := range keys {
		heavy[i] = int32(uint32(k))
	}
	cut := 0
	for ; cut < len(heavy)-1; cut++ {
		if cum+s.wt[heavy[cut]] > limit {
			break
		}
		cum += s.wt[heavy[cut]]
	}
	kept, sum := heavy[cut:], 0.0
	for _, id := range kept {
		sum += s.wt[id]
	}
	return kept, sum
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

// draw samples one candidate with probability proportional to its weight.
func (s *Sampler) draw(cand []int32, total float64) int32 {
	u := s.rng.Float64() * total
	for _, id := range cand {
		u -= s.wt[id]
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
