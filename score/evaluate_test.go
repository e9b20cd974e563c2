package score

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
)

// noSynonyms is a WordNet that knows no word.
type noSynonyms struct{}

func (noSynonyms) Synonyms(string) []string { return nil }

func TestEvaluateEdgeCases(t *testing.T) {
	ref := Parse("1 | entity -->> (whole, dog)\n2 | attribute -->> (entity 1, \"Is entity 1 red?\", \"Is entity 1 blue?\")", false)
	pred := Parse("nothing parsable", false)
	m, err := MatchEntities(ref, pred, noSynonyms{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	predAns := Parse("2 | attribute -->> (entity 1, \"Yes\")", true)
	r := Evaluate("a/b/c.jpg", ref, pred, m, predAns, Parse("", true))
	if r.Tag != (PRF{}) || r.Attribute.Recall != 0.5 || r.Attribute.Precision != 0 {
		t.Errorf("scores %+v", r.Dimensions)
	}
	notes := strings.Join(r.Notes, "\n")
	if !strings.Contains(notes, "prediction has no entity line") || !strings.Contains(notes, "one answer") {
		t.Errorf("notes %q", r.Notes)
	}
	if r.Counts.RefEntities != 1 || r.Counts.RefAttributes != 1 || r.Counts.PredEntities != 0 {
		t.Errorf("counts %+v", r.Counts)
	}
}

func TestMatchByEmbeddingAndBox(t *testing.T) {
	ref := Parse("1 | entity -->> (whole, moon)\n2 | entity -->> (whole, tree)\n"+
		"3 | location -->> (entity 1, [0.1, 0.1, 0.5, 0.5])", false)
	cand := Parse("4 | entity -->> (whole, lunar disc)\n5 | entity -->> (whole, rock)\n"+
		"6 | location -->> (entity 4, [0.1, 0.1, 0.5, 0.45])", false)
	sims := [][]float32{{0.5, 0.4999}, {0.1, 0.2}}
	m, err := MatchEntities(ref, cand, noSynonyms{}, func(i, j int) float32 { return sims[i][j] })
	if err != nil {
		t.Fatal(err)
	}
	if m.Matched != 1 || m.LocMatched != 1 || m.Pairs["entity 1"] != "entity 4" || len(m.Pairs) != 1 {
		t.Errorf("match %+v", m)
	}
	if tag, loc := m.Tag(), m.Loc(); tag.Recall != 0.5 || tag.Precision != 0.5 || loc.Recall != 1 || loc.Precision != 1 {
		t.Errorf("tag %+v loc %+v", tag, loc)
	}
}

func TestSummarizeAndMarkdown(t *testing.T) {
	a := ImageResult{Image: "x|y", Dimensions: Dimensions{Tag: PRF{1, 1, 1}, Global: PRF{0, 0, 0.5}}}
	b := ImageResult{Image: "z", Dimensions: Dimensions{Tag: PRF{0, 0, 0}, Location: PRF{1, 1, 1}}}
	tot := Summarize([]ImageResult{a, b})
	if tot.Tag.F1 != 50 || tot.Location.F1 != 50 || tot.Global.F1 != 25 || math.Abs(tot.PancapScore-102.5) > 1e-9 {
		t.Errorf("total %+v", tot)
	}
	var sb strings.Builder
	rep := &Report{Total: tot, Unscored: 3, Images: []ImageResult{a, b}}
	if err := rep.WriteMarkdown(&sb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## PancapScore: 102.50", "3 references without a prediction", "| global | 0.00 | 0.00 | 25.00 |", `| x\|y | 100.00 |`} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, sb.String())
		}
	}
	if Summarize(nil).Images != 0 {
		t.Error("empty summary")
	}
}

// failingJudge fails every request.
type failingJudge struct{}

func (failingJudge) Complete(context.Context, string) (string, error) {
	return "", errors.New("judge down")
}

func TestScoreNamesTheImage(t *testing.T) {
	s := &Scorer{Judge: failingJudge{}, WordNet: noSynonyms{}}
	_, err := s.Score(t.Context(), Item{Image: "a/b/c.jpg", Pred: "p", Ref: "r"})
	if err == nil || !strings.Contains(err.Error(), "a/b/c.jpg: judge down") {
		t.Errorf("error %v", err)
	}
}

func TestPrompts(t *testing.T) {
	p := QuestionsPrompt("CAP {}", "LINES")
	if !strings.HasPrefix(p, "Transfrom each extracted content") || !strings.Contains(p, "The paragraph is as follows: CAP {}\n") ||
		!strings.HasSuffix(p, "is as follows: LINES") {
		t.Errorf("questions prompt ends %q", p[len(p)-120:])
	}
	if e := ExtractPrompt("X"); !strings.HasSuffix(e, "The original paragraph is as follows: \nX") || len(e) != len(extractPrompt)-2+1 {
		t.Errorf("extract prompt ends %q", e[len(e)-60:])
	}
	if a := AnswersPrompt("C", "Q"); !strings.HasSuffix(a, "The paragraph is as follows: C\nAnd the set of questions is as follows: Q") {
		t.Errorf("answers prompt ends %q", a[len(a)-80:])
	}
}
