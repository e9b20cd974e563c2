package eval

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pancap-serve/pancap/chain"
)

// a hand-made scene: a large red striped circle containing a small blue
// solid square, and a green dotted star with a dark outline to the right.
const sceneJSON = `{"id": "t-0", "image": "images/000000.png", "width": 256, "height": 256,
 "entities": [
  {"tag": "circle", "colour": "red", "fill": "striped", "outline": "none", "box": [100, 100, 500, 500], "size": "large"},
  {"tag": "square", "colour": "blue", "fill": "solid", "outline": "none", "box": [250, 250, 350, 350], "size": "small"},
  {"tag": "star", "colour": "green", "fill": "dotted", "outline": "dark", "box": [600, 100, 800, 300], "size": "medium"}],
 "relations": [[1, "inside", 0], [0, "left of", 2]],
 "facts": [[1, "inside", 0], [0, "left of", 2], [1, "left of", 2], [0, "larger than", 1], [0, "larger than", 2]],
 "global": {"colour": "blue", "brightness": "dark", "texture": "plain"},
 "caption": ""}`

const truthCaption = "The image shows three shapes on a dark blue background with a plain texture. " +
	"There is a large red striped circle <box>[[100, 100, 500, 500]]</box>. " +
	"We can see a small blue solid square <box>[[250, 250, 350, 350]]</box>. " +
	"A medium green dotted star <box>[[600, 100, 800, 300]]</box> with a dark outline is visible. " +
	"The blue square lies inside the red circle. The red circle is to the left of the green star."

func scene(t *testing.T) Scene {
	t.Helper()
	var line bytes.Buffer // scenes.jsonl holds one scene per line
	if err := json.Compact(&line, []byte(sceneJSON)); err != nil {
		t.Fatal(err)
	}
	s, err := ReadScenes(strings.NewReader(line.String() + "\n\n"))
	if err != nil || len(s) != 1 {
		t.Fatalf("ReadScenes: %v, %d scenes", err, len(s))
	}
	return s[0]
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestParseCaption(t *testing.T) {
	c := ParseCaption(truthCaption)
	want := Caption{
		Mentions: []Mention{
			{Tag: "circle", Box: chain.Box{100, 100, 500, 500}, Attrs: []string{"fill:striped", "colour:red", "size:large"}},
			{Tag: "square", Box: chain.Box{250, 250, 350, 350}, Attrs: []string{"fill:solid", "colour:blue", "size:small"}},
			{Tag: "star", Box: chain.Box{600, 100, 800, 300}, Attrs: []string{"fill:dotted", "colour:green", "size:medium", "outline:dark"}},
		},
		Relations: []NamedRelation{{"blue square", "inside", "red circle"}, {"red circle", "left of", "green star"}},
		Global:    []string{"brightness:dark", "colour:blue", "texture:plain"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("ParseCaption:\n got %+v\nwant %+v", c, want)
	}
}

func TestParseCaptionStopsAtForeignWords(t *testing.T) {
	// "shiny" is no attribute word: only "red" (after it) belongs to the phrase;
	// a box with an out-of-range value is skipped.
	c := ParseCaption("A big shiny red ring <box>[[1, 2, 3, 4]]</box>. A square <box>[[1, 2, 99999999999999999999, 4]]</box>.")
	if len(c.Mentions) != 1 || c.Mentions[0].Tag != "ring" || !reflect.DeepEqual(c.Mentions[0].Attrs, []string{"colour:red"}) {
		t.Fatalf("got %+v", c.Mentions)
	}
}

func TestScorePerfectCaption(t *testing.T) {
	s := scene(t)
	list := []Tagged{{"circle", chain.Box{100, 100, 500, 500}}, {"square", chain.Box{250, 250, 350, 350}}, {"star", chain.Box{600, 100, 800, 300}}}
	r := Score(s, truthCaption, list)
	for name, c := range map[string]Counts{"tag": r.Tag, "location": r.Location, "attribute": r.Attribute,
		"relation": r.Relation, "global": r.Global, "list tag": r.ListTag, "list location": r.ListLocation} {
		if c.F1() != 1 {
			t.Errorf("%s: F1 %v, counts %+v", name, c.F1(), c)
		}
	}
	if !near(r.Overall(), 410) {
		t.Errorf("overall %v, want 410", r.Overall())
	}
}

func TestScoreMistakes(t *testing.T) {
	s := scene(t)
	// circle right; square tagged "ring" (no tag match); star matched by tag
	// but misplaced (IoU 0); one wrong attribute (circle "dotted"); a
	// relation that is a fact but not stated, one that is false, one whose
	// entity does not resolve; global brightness wrong.
	caption := "On a bright blue background with a plain texture there are three shapes. " +
		"There is a large red dotted circle <box>[[100, 100, 500, 500]]</box>. " +
		"There is a small blue solid ring <box>[[250, 250, 350, 350]]</box>. " +
		"There is a medium green dotted star <box>[[0, 800, 100, 900]]</box>. " +
		"The red circle is larger than the red circle. The red circle is above the red circle. " +
		"The blue square is inside the red circle."
	r := Score(s, caption, []Tagged{{"circle", chain.Box{100, 100, 500, 500}}, {"circle", chain.Box{0, 0, 10, 10}}})
	check := func(name string, got, want Counts) {
		t.Helper()
		if got != want {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
	check("tag", r.Tag, Counts{Pred: 3, GT: 3, HitPred: 2, HitGT: 2})
	check("location", r.Location, Counts{Pred: 3, GT: 3, HitPred: 1, HitGT: 1})
	// predicted attrs 3+3+3; only the circle is location-matched: size and colour right
	check("attribute", r.Attribute, Counts{Pred: 9, GT: 10, HitPred: 2, HitGT: 2})
	// "larger than" circle→circle is no fact; "above" neither; "blue square" does not resolve
	check("relation", r.Relation, Counts{Pred: 3, GT: 2})
	check("global", r.Global, Counts{Pred: 3, GT: 3, HitPred: 2, HitGT: 2})
	check("list tag", r.ListTag, Counts{Pred: 2, GT: 3, HitPred: 1, HitGT: 1})
	check("list location", r.ListLocation, Counts{Pred: 2, GT: 3, HitPred: 1, HitGT: 1})
	if f := r.Tag.F1(); !near(f, 2.0/3) {
		t.Errorf("tag F1 %v", f)
	}
}

func TestRelationPrecisionUsesFacts(t *testing.T) {
	s := scene(t)
	// "larger than" circle→star is a fact the caption did not state: right
	// for precision, no help for recall.
	caption := strings.Replace(truthCaption, "The red circle is to the left of the green star.",
		"The red circle is bigger than the green star.", 1)
	r := Score(s, caption, nil)
	if want := (Counts{Pred: 2, GT: 2, HitPred: 2, HitGT: 1}); r.Relation != want {
		t.Fatalf("relation %+v, want %+v", r.Relation, want)
	}
	if r.ListTag.F1() != 0 || r.ListTag.Recall() != 0 {
		t.Errorf("empty list: %+v", r.ListTag)
	}
}

func TestMatchOneToOne(t *testing.T) {
	gt := []Object{{Tag: "circle", Box: chain.Box{0, 0, 100, 100}}, {Tag: "circle", Box: chain.Box{200, 0, 300, 100}}}
	// both predictions overlap the second circle best; greedy by IoU gives
	// it to the closer one and the other takes the first circle.
	pred := []Tagged{{"circle", chain.Box{190, 0, 300, 100}}, {"circle", chain.Box{200, 0, 300, 100}}, {"circle", chain.Box{0, 0, 100, 100}}}
	got := Match(pred, gt)
	want := []Pair{{Pred: 1, GT: 1, IoU: 1}, {Pred: 2, GT: 0, IoU: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Match %+v, want %+v", got, want)
	}
}

func TestIoU(t *testing.T) {
	for _, c := range []struct {
		a, b chain.Box
		want float64
	}{
		{chain.Box{0, 0, 10, 10}, chain.Box{0, 0, 10, 10}, 1},
		{chain.Box{0, 0, 10, 10}, chain.Box{5, 0, 15, 10}, 50.0 / 150},
		{chain.Box{0, 0, 10, 10}, chain.Box{10, 0, 20, 10}, 0},
		{chain.Box{5, 5, 5, 5}, chain.Box{5, 5, 5, 5}, 0},
	} {
		if got := IoU(c.a, c.b); !near(got, c.want) {
			t.Errorf("IoU(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestCountsEdgeCases(t *testing.T) {
	if c := (Counts{}); c.F1() != 1 {
		t.Errorf("nothing to find, nothing predicted: F1 %v", c.F1())
	}
	if c := (Counts{GT: 2}); c.Precision() != 0 || c.F1() != 0 {
		t.Errorf("missed everything: %v %v", c.Precision(), c.F1())
	}
	var r Result
	r.Add(Result{Images: 1, Tag: Counts{1, 2, 1, 1}})
	r.Add(Result{Images: 2, Tag: Counts{3, 2, 1, 1}})
	if r.Images != 3 || r.Tag != (Counts{4, 4, 2, 2}) || !near(r.Tag.F1(), 0.5) {
		t.Errorf("Add: %+v", r)
	}
}

func TestReportTable(t *testing.T) {
	r := Score(scene(t), truthCaption, nil)
	var buf bytes.Buffer
	if err := r.Report().WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"tag", "list location", "overall", "over 1 images", "1.000"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if rep := r.Report(); len(rep.Dimensions) != 7 || !near(rep.Overall, 410) {
		t.Errorf("report %+v", rep)
	}
}

func TestReadScenesErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not json":       "{",
		"bad relation":   `{"entities": [], "relations": [[0, 1]]}`,
		"out of range":   `{"entities": [{"tag": "circle"}], "relations": [[0, "above", 1]]}`,
		"relation types": `{"entities": [{"tag": "circle"}], "facts": [["a", "above", 0]]}`,
	} {
		if _, err := ReadScenes(strings.NewReader(in)); !errors.Is(err, ErrScenes) {
			t.Errorf("%s: err %v, want ErrScenes", name, err)
		}
	}
}

// TestSceneEngineOutput scores the scene engine's own captions
// (testdata/scenes.jsonl: `python training/scenes.py --test 5`, its test
// split): every dimension must be perfect, which checks that the Go grammar
// and training/scenes.py agree.
func TestSceneEngineOutput(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "scenes.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scenes, err := ReadScenes(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(scenes) != 5 {
		t.Fatalf("%d scenes, want 5", len(scenes))
	}
	var total Result
	for _, s := range scenes {
		list := make([]Tagged, len(s.Entities))
		for i, o := range s.Entities {
			list[i] = Tagged{o.Tag, o.Box}
		}
		total.Add(Score(s, s.Caption, list))
	}
	if !near(total.Overall(), 410) {
		var buf bytes.Buffer
		_ = total.Report().WriteTable(&buf)
		t.Fatalf("ground-truth captions do not score perfectly:\n%s", buf.String())
	}
}

func FuzzParseCaption(f *testing.F) {
	f.Add(truthCaption)
	f.Add("There is a red <box>[[1, 2, 3</box>. The red the red.")
	f.Fuzz(func(t *testing.T, s string) {
		c := ParseCaption(s)
		for _, m := range c.Mentions {
			for _, v := range m.Box {
				if v < 0 || v > 1000 {
					t.Fatalf("box value %d out of range in %q", v, s)
				}
			}
		}
		if len(c.Global)%3 != 0 {
			t.Fatalf("global items %v", c.Global)
		}
	})
}

func FuzzReadScenes(f *testing.F) {
	f.Add(sceneJSON)
	f.Add(`{"relations": [[0, "x", 0]]}`)
	f.Fuzz(func(t *testing.T, s string) {
		scenes, err := ReadScenes(strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, ErrScenes) {
				t.Fatalf("error %v does not wrap ErrScenes", err)
			}
			return
		}
		for _, sc := range scenes {
			for _, r := range append(sc.Relations, sc.Facts...) {
				if r.Subj < 0 || r.Subj >= len(sc.Entities) || r.Obj < 0 || r.Obj >= len(sc.Entities) {
					t.Fatalf("relation %+v outside %d entities", r, len(sc.Entities))
				}
			}
		}
	})
}
