package score

import (
	"fmt"
	"math"
	"strings"
)

// The thresholds of the authors' eval_entity: name embeddings at least this
// similar may match, boxes at least this IoU are location-consistent.
const (
	nameSimThreshold = 0.5
	boxIoUThreshold  = 0.5
)

// Synonyms gives the lemma names of a word's noun synsets
// (*wordnet.WordNet satisfies it).
type Synonyms interface {
	Synonyms(word string) []string
}

// SynonymScore is the authors' compute_synonyms_score(a, b, wn.NOUN): 1
// when either name contains the other, else the Jaccard overlap of the
// lemma names of all noun synsets of their words (split on whitespace),
// over |union| + 1e-6. (The authors' code raises a TypeError when a has no
// word and is not contained in b; here that case scores 0.)
func SynonymScore(wn Synonyms, a, b string) float64 {
	return newSynonymSets(wn).score(a, b)
}

// synonymSets memoises the lemma-name set of each name.
type synonymSets struct {
	wn   Synonyms
	sets map[string]map[string]bool
}

func newSynonymSets(wn Synonyms) *synonymSets {
	return &synonymSets{wn: wn, sets: map[string]map[string]bool{}}
}

func (s *synonymSets) of(name string) map[string]bool {
	if set, ok := s.sets[name]; ok {
		return set
	}
	set := map[string]bool{}
	for _, w := range pyFields(name) {
		for _, l := range s.wn.Synonyms(w) {
			set[l] = true
		}
	}
	s.sets[name] = set
	return set
}

func (s *synonymSets) score(a, b string) float64 {
	if strings.Contains(b, a) || strings.Contains(a, b) {
		return 1
	}
	s1, s2 := s.of(a), s.of(b)
	inter := 0
	for l := range s1 {
		if s2[l] {
			inter++
		}
	}
	union := len(s1) + len(s2) - inter
	return float64(inter) / (float64(union) + 1e-6)
}

// MaxEntities bounds the entity lines of one side of a match: more cannot
// come from one 8192-token judge reply, and the assignment's time grows
// with the cube of the count.
const MaxEntities = 1000

// Match is the one-to-one entity matching of a reference ("gt") and a
// candidate content.
type Match struct {
	// Pairs maps a matched reference entity key to its candidate's key.
	Pairs map[string]string
	// Matched counts the matched pairs, LocMatched those of them whose
	// boxes overlap by IoU ≥ 0.5.
	Matched, LocMatched int
	// Ref and Cand count the entities, RefLocs and CandLocs the entities
	// with a location.
	Ref, Cand, RefLocs, CandLocs int
}

// MatchEntities is the authors' eval_entity: a cost matrix over reference ×
// candidate entities (same name -1000; else WordNet synonym score s > 0:
// -100·s; else name-embedding cosine c ≥ 0.5: -10·c; else 1e6), minus the
// IoU of the two boxes when a matched pair has both and they overlap by
// IoU ≥ 0.5, solved like scipy's linear_sum_assignment; pairs of negative
// cost are matches. sim(i, j) is the float32 cosine of the i-th reference
// and j-th candidate names.
func MatchEntities(ref, cand *Content, wn Synonyms, sim func(i, j int) float32) (Match, error) {
	if n := max(len(ref.Entities), len(cand.Entities)); n > MaxEntities {
		return Match{}, fmt.Errorf("score: %d entity lines in one judge reply, more than %d", n, MaxEntities)
	}
	syn := newSynonymSets(wn)
	m := Match{Pairs: map[string]string{}, Ref: len(ref.Entities), Cand: len(cand.Entities),
		RefLocs: len(ref.Locations), CandLocs: len(cand.Locations)}
	cost := make([][]float64, len(ref.Entities))
	locOK := make([][]bool, len(ref.Entities))
	for i, g := range ref.Entities {
		cost[i] = make([]float64, len(cand.Entities))
		locOK[i] = make([]bool, len(cand.Entities))
		gloc, gHas := ref.Locations[g.Key]
		for j, c := range cand.Entities {
			var v float64
			if g.Name == c.Name {
				v = -1000
			} else if s := syn.score(g.Name, c.Name); s > 0 {
				v = -100 * s
			} else if cs := sim(i, j); cs >= nameSimThreshold {
				v = float64(-10 * cs) // float32 product, as numpy computes it
			} else {
				v = 1e6
			}
			if cloc, cHas := cand.Locations[c.Key]; v < 0 && gHas && cHas {
				if b := float64(iou(gloc, cloc)); b >= boxIoUThreshold {
					v += -b
					locOK[i][j] = true
				}
			}
			cost[i][j] = v
		}
	}
	rows, cols, err := assign(cost)
	if err != nil {
		return m, err
	}
	for k, i := range rows {
		j := cols[k]
		if cost[i][j] < 0 {
			m.Matched++
			if locOK[i][j] {
				m.LocMatched++
			}
			m.Pairs[ref.Entities[i].Key] = cand.Entities[j].Key
		}
	}
	return m, nil
}

// PRF is a precision, recall and F1.
type PRF struct {
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
}

// f1 is the authors' F1: 0 when precision + recall is 0.
func f1(p, r float64) PRF {
	out := PRF{Precision: p, Recall: r}
	if r+p != 0 {
		out.F1 = float64(2*r) * p / (r + p)
	}
	return out
}

// Tag is eval_alldims' tagging score of a match: recall over reference
// entities, precision over candidate entities (0 when either has none;
// the authors' code divides by zero when the reference has none).
func (m Match) Tag() PRF {
	return f1(ratio(m.Matched, m.Cand), ratio(m.Matched, m.Ref))
}

// Loc is eval_alldims' location score: location-consistent matches over
// the entities with a location on each side.
func (m Match) Loc() PRF {
	return f1(ratio(m.LocMatched, m.CandLocs), ratio(m.LocMatched, m.RefLocs))
}

// ratio is a/b, 0 when b is 0.
func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// cosine is the cosine of two embeddings in float64, rounded to float32
// as the authors' float32 features give it; NaN when either is all zero.
func cosine(a, b []float32) float32 {
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	return float32(dot / (math.Sqrt(na) * math.Sqrt(nb)))
}
