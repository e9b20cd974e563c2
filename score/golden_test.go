package score

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/pancap-serve/pancap/score/wordnet"
)

// golden is testdata/score/golden/golden.json: the authors' functions, as
// tools/reference/pancapscore.py re-implements them with nltk and scipy,
// run on testdata/score/golden/inputs.json. Floats are Python reprs.
type golden struct {
	Numbers []struct {
		Text       string
		Int, Float *string
	}
	Boxes []struct {
		Caption, Converted string
		Width, Height      int
	}
	Parse []struct {
		Text       string
		Answers    bool
		Entities   [][2]string
		Locations  map[string][4]string
		Attributes [][2]string
		Relations  [][3]string
		Globals    []string
		Lines      []string
		Parsed     int
		Invalid    int
	}
	Synonyms []struct{ A, B, Score string }
	Lemmas   map[string][]string
	LSAP     []struct {
		Cost       [][]float64
		Rows, Cols []int
	}
	IoU []struct {
		A, B [4]string
		IoU  string
	}
	Questions []struct {
		NRef        int      `json:"n_ref"`
		PredAnswers []string `json:"pred_answers"`
		NPred       int      `json:"n_pred"`
		RefAnswers  []string `json:"ref_answers"`
		Score       []float64
	}
}

func readGolden(t *testing.T) *golden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "score", "golden", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return &g
}

// pyNum parses a Python float repr ("nan", "inf" included).
func pyNum(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("golden float %q: %v", s, err)
	}
	return v
}

// same is bit equality, NaN equal to NaN.
func same(a, b float64) bool { return a == b || (a != a && b != b) }

func TestGoldenNumbers(t *testing.T) {
	for _, c := range readGolden(t).Numbers {
		i, ok := pyInt(c.Text)
		if ok != (c.Int != nil) || (ok && i != *c.Int) {
			t.Errorf("pyInt(%q) = %q, %v; Python's int() %v", c.Text, i, ok, deref(c.Int))
		}
		f, ok := pyFloat(c.Text)
		if ok != (c.Float != nil) || (ok && !same(f, pyNum(t, *c.Float))) {
			t.Errorf("pyFloat(%q) = %v, %v; Python's float() %v", c.Text, f, ok, deref(c.Float))
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "ValueError"
	}
	return *s
}

func TestGoldenBoxes(t *testing.T) {
	for _, c := range readGolden(t).Boxes {
		got, err := ConvertBoxes(c.Caption, c.Width, c.Height)
		if err != nil || got != c.Converted {
			t.Errorf("ConvertBoxes(%q, %d, %d) = %q, %v; the authors' %q", c.Caption, c.Width, c.Height, got, err, c.Converted)
		}
	}
}

func TestGoldenParse(t *testing.T) {
	for _, c := range readGolden(t).Parse {
		got := Parse(c.Text, c.Answers)
		name := strconv.Quote(c.Text[:min(len(c.Text), 40)])
		var ents [][2]string
		for _, e := range got.Entities {
			ents = append(ents, [2]string{e.Key, e.Name})
		}
		if !slices.Equal(ents, c.Entities) {
			t.Errorf("%s: entities %q, the authors' %q", name, ents, c.Entities)
		}
		if len(got.Locations) != len(c.Locations) {
			t.Errorf("%s: %d locations, the authors' %d", name, len(got.Locations), len(c.Locations))
		}
		for k, want := range c.Locations {
			box, ok := got.Locations[k]
			for i := range box {
				if !ok || !same(box[i], pyNum(t, want[i])) {
					t.Errorf("%s: location of %s %v, the authors' %v", name, k, box, want)
					break
				}
			}
		}
		var attrs [][2]string
		for _, a := range got.Attributes {
			attrs = append(attrs, [2]string{a.Entity, a.Text})
		}
		var rels [][3]string
		for _, r := range got.Relations {
			rels = append(rels, [3]string{r.Subject, r.Object, r.Text})
		}
		if !slices.Equal(attrs, c.Attributes) || !slices.Equal(rels, c.Relations) || !slices.Equal(got.Globals, c.Globals) {
			t.Errorf("%s (answers %v): attributes %q relations %q globals %q; the authors' %q %q %q",
				name, c.Answers, attrs, rels, got.Globals, c.Attributes, c.Relations, c.Globals)
		}
		if !slices.Equal(got.Lines, c.Lines) {
			t.Errorf("%s: lines %q, the authors' %q", name, got.Lines, c.Lines)
		}
		if got.Parsed != c.Parsed || got.Invalid != c.Invalid {
			t.Errorf("%s (answers %v): %d parsed, %d invalid; the authors' %d, %d", name, c.Answers, got.Parsed, got.Invalid, c.Parsed, c.Invalid)
		}
	}
}

// testWordNet is the WordNet subset vendored for the fixtures' words.
func testWordNet(t testing.TB) *wordnet.WordNet {
	t.Helper()
	wn, err := wordnet.Open(filepath.Join("..", "testdata", "score", "wordnet"))
	if err != nil {
		t.Fatal(err)
	}
	return wn
}

func TestGoldenSynonyms(t *testing.T) {
	g := readGolden(t)
	dbs := map[string]*wordnet.WordNet{"subset": testWordNet(t)}
	if full, err := wordnet.Open(wordnet.DefaultDir); err == nil {
		dbs["debian"] = full
	} else {
		t.Logf("only the vendored subset: %v", err)
	}
	for name, wn := range dbs {
		for _, c := range g.Synonyms {
			if got, want := SynonymScore(wn, c.A, c.B), pyNum(t, c.Score); got != want {
				t.Errorf("%s: SynonymScore(%q, %q) = %v, NLTK's %v", name, c.A, c.B, got, want)
			}
		}
		for w, want := range g.Lemmas {
			if got := wn.Synonyms(w); !slices.Equal(got, want) && (len(got) > 0 || len(want) > 0) {
				t.Errorf("%s: Synonyms(%q) = %q, NLTK's %q", name, w, got, want)
			}
		}
	}
}

func TestGoldenAssign(t *testing.T) {
	for _, c := range readGolden(t).LSAP {
		rows, cols, err := assign(c.Cost)
		if err != nil || !slices.Equal(rows, c.Rows) || !slices.Equal(cols, c.Cols) {
			t.Errorf("assign(%v) = %v %v %v; scipy's %v %v", c.Cost, rows, cols, err, c.Rows, c.Cols)
		}
	}
}

func TestGoldenIoU(t *testing.T) {
	for _, c := range readGolden(t).IoU {
		var a, b Box
		for i := range a {
			a[i], b[i] = pyNum(t, c.A[i]), pyNum(t, c.B[i])
		}
		if got, want := float64(iou(a, b)), pyNum(t, c.IoU); !same(got, want) {
			t.Errorf("iou(%v, %v) = %v, torchvision's %v", a, b, got, want)
		}
	}
}

func TestGoldenQuestionScores(t *testing.T) {
	for _, c := range readGolden(t).Questions {
		var short bool
		got := questionScore(c.NRef, c.PredAnswers, c.NPred, c.RefAnswers, &short)
		if want := c.Score; got.Recall != want[0] || got.Precision != want[1] || got.F1 != want[2] {
			t.Errorf("questionScore(%d, %q, %d, %q) = %+v; the authors' (recall, precision, F1) %v",
				c.NRef, c.PredAnswers, c.NPred, c.RefAnswers, got, want)
		}
	}
}

func TestAssignInvalid(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(-1)} {
		if _, _, err := assign([][]float64{{0, v}}); err == nil {
			t.Errorf("assign accepted %v", v)
		}
	}
	if r, c, err := assign(nil); r != nil || c != nil || err != nil {
		t.Errorf("assign(nil) = %v %v %v", r, c, err)
	}
}
