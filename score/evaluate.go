package score

import (
	"strings"
)

// ImageResult is the score of one image.
type ImageResult struct {
	Image string `json:"image"`
	Dimensions
	// PancapScore is this image's tag + location + attribute + relation +
	// 0.1 × global F1. Like every number of ImageResult it is a fraction,
	// not ×100 (the paper's number is Total's: the same sum over the
	// averages, ×100).
	PancapScore float64 `json:"pancapscore"`
	Counts      Counts  `json:"counts"`
	// Notes name the cases where the authors' code would have stopped with
	// an error (a division by zero, an answer with one element) and this
	// one went on with a zero.
	Notes      []string   `json:"notes,omitempty"`
	Transcript Transcript `json:"transcript"`
}

// Dimensions are the five scores of PancapScore.
type Dimensions struct {
	Tag       PRF `json:"tag"`
	Location  PRF `json:"location"`
	Attribute PRF `json:"attribute"`
	Relation  PRF `json:"relation"`
	Global    PRF `json:"global"`
}

// all lists the dimensions with their names, in the paper's order.
func (d *Dimensions) all() []struct {
	Name string
	PRF  *PRF
} {
	return []struct {
		Name string
		PRF  *PRF
	}{{"tag", &d.Tag}, {"location", &d.Location}, {"attribute", &d.Attribute}, {"relation", &d.Relation}, {"global", &d.Global}}
}

// Counts are the sizes behind one image's scores.
type Counts struct {
	RefEntities   int `json:"ref_entities"`
	PredEntities  int `json:"pred_entities"`
	Matched       int `json:"matched"`
	RefLocations  int `json:"ref_locations"`
	PredLocations int `json:"pred_locations"`
	LocMatched    int `json:"location_matched"`
	RefAttributes int `json:"ref_attributes"`
	PredAttrs     int `json:"pred_attributes"`
	RefRelations  int `json:"ref_relations"`
	PredRelations int `json:"pred_relations"`
	RefGlobals    int `json:"ref_globals"`
	PredGlobals   int `json:"pred_globals"`
	// InvalidLines counts the judge lines dropped after parsing, over the
	// reference questions and the prediction's content.
	InvalidLines int `json:"invalid_lines"`
}

// Evaluate is eval_alldims' per-image part: tag and location from the
// match of the reference questions' entities (ref) with the prediction
// content's (pred); attribute, relation and global recall from the
// prediction's answers to the reference's questions (predAns) and
// precision from the reference's answers to the prediction's (refAns).
func Evaluate(image string, ref, pred *Content, m Match, predAns, refAns *Content) ImageResult {
	r := ImageResult{Image: image, Dimensions: Dimensions{Tag: m.Tag(), Location: m.Loc()}}
	if m.Ref == 0 {
		r.Notes = append(r.Notes, "the reference has no entity line (the authors' code divides by zero)")
	}
	if m.Cand == 0 {
		r.Notes = append(r.Notes, "the prediction has no entity line (the authors' eval_tag_and_loc.py divides by zero)")
	}
	texts := func(as []Attribute) []string {
		out := make([]string, len(as))
		for i, a := range as {
			out[i] = a.Text
		}
		return out
	}
	rels := func(rs []Relation) []string {
		out := make([]string, len(rs))
		for i, x := range rs {
			out[i] = x.Text
		}
		return out
	}
	var short bool
	r.Attribute = questionScore(len(ref.Attributes), texts(predAns.Attributes), len(pred.Attributes), texts(refAns.Attributes), &short)
	r.Relation = questionScore(len(ref.Relations), rels(predAns.Relations), len(pred.Relations), rels(refAns.Relations), &short)
	r.Global = questionScore(len(ref.Globals), predAns.Globals, len(pred.Globals), refAns.Globals, &short)
	if short {
		r.Notes = append(r.Notes, "an answer line has one answer (the authors' code raises IndexError): counted as not \"no\"")
	}
	r.PancapScore = pancapScore(r.Tag.F1, r.Location.F1, r.Attribute.F1, r.Relation.F1, r.Global.F1)
	r.Counts = Counts{RefEntities: m.Ref, PredEntities: m.Cand, Matched: m.Matched,
		RefLocations: m.RefLocs, PredLocations: m.CandLocs, LocMatched: m.LocMatched,
		RefAttributes: len(ref.Attributes), PredAttrs: len(pred.Attributes),
		RefRelations: len(ref.Relations), PredRelations: len(pred.Relations),
		RefGlobals: len(ref.Globals), PredGlobals: len(pred.Globals),
		InvalidLines: ref.Invalid + pred.Invalid}
	return r
}

// pancapScore is tag + location + attribute + relation + 0.1 × global, in
// the authors' order of additions.
func pancapScore(tag, loc, attr, rel, glob float64) float64 {
	return tag + loc + attr + rel + float64(0.1*glob)
}

// questionScore is the authors' eval_attr (and eval_relation, eval_global):
// nothing when the reference has no such line; recall is the credit of the
// prediction's answers (the first nRef+1 of them: the authors' loop breaks
// after counting the answer at index nRef) over nRef; precision the credit
// of the reference's answers (first nPred+1) over their count, 0 when
// there are none or the prediction has no such line.
func questionScore(nRef int, predAnswers []string, nPred int, refAnswers []string, short *bool) PRF {
	if nRef == 0 {
		return PRF{}
	}
	tally := func(answers []string, limit int) float64 {
		s := 0.0
		for i, a := range answers {
			s += answerCredit(a, short)
			if i >= limit {
				break
			}
		}
		return s
	}
	rec := tally(predAnswers, nRef) / float64(nRef)
	prec := 0.0
	if len(refAnswers) > 0 && nPred > 0 {
		prec = tally(refAnswers, nPred) / float64(len(refAnswers))
	}
	return f1(prec, rec)
}

// answerCredit scores an answer pair "Yes", "No": 0.5 when the first
// (whose right answer is yes) is yes, 0.5 when the second is no. Answers
// are split on commas and stripped of quotes, spaces and commas, lower
// case.
func answerCredit(s string, short *bool) float64 {
	parts := strings.Split(s, ",")
	norm := func(p string) string { return strings.ToLower(strings.Trim(p, "'\" ,")) }
	c := 0.0
	if norm(parts[0]) == "yes" {
		c += 0.5
	}
	if len(parts) < 2 {
		*short = true
	} else if norm(parts[1]) == "no" {
		c += 0.5
	}
	return c
}

// Total is the averages over images, as the paper reports them (×100).
type Total struct {
	Images int `json:"images"`
	Dimensions
	// PancapScore is the sum of the average F1s (global ×0.1), ×100.
	PancapScore float64 `json:"pancapscore"`
}

// Summarize averages per-image results the authors' way: each number's
// plain left-to-right sum over images divided by their count, every field
// ×100.
func Summarize(results []ImageResult) Total {
	t := Total{Images: len(results)}
	if len(results) == 0 {
		return t
	}
	n := float64(len(results))
	for k, d := range t.all() {
		var p, r, f float64
		for i := range results {
			v := results[i].all()[k].PRF
			p += v.Precision
			r += v.Recall
			f += v.F1
		}
		*d.PRF = PRF{Precision: p / n, Recall: r / n, F1: f / n}
	}
	t.PancapScore = 100 * pancapScore(t.Tag.F1, t.Location.F1, t.Attribute.F1, t.Relation.F1, t.Global.F1)
	for _, d := range t.all() {
		*d.PRF = PRF{Precision: 100 * d.PRF.Precision, Recall: 100 * d.PRF.Recall, F1: 100 * d.PRF.F1}
	}
	return t
}
