package score

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"1 | entity -->> (whole, dog)\n2 | location -->> (entity 1, [0.1, 0.2, 0.3, 0.4])\n3 | attribute -->> (entity 1, \"entity 1 is red\")",
		"4 | relation -->> (1, 2, \"entity 1 sees entity 2\")\n5 | global -->> (\"calm, quiet\")",
		"9 | attribute -->> (entity 1, \"No\", \"Yes\")", "x | y", "",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, text string, answers bool) {
		c := Parse(text, answers)
		if c.Invalid > c.Parsed || c.Parsed > strings.Count(text, "\n")+1 {
			t.Errorf("%d invalid of %d parsed lines", c.Invalid, c.Parsed)
		}
		for k := range c.Locations {
			if !c.hasEntity(k) {
				t.Errorf("location of unknown %q", k)
			}
		}
		if !answers {
			for _, a := range c.Attributes {
				if !c.hasEntity(a.Entity) {
					t.Errorf("attribute of unknown %q", a.Entity)
				}
			}
			for _, r := range c.Relations {
				if !c.hasEntity(r.Subject) || !c.hasEntity(r.Object) {
					t.Errorf("relation of unknown %q, %q", r.Subject, r.Object)
				}
			}
		}
		// Remapping questions never fails and keeps the candidate's lines first.
		pairs := map[string]string{}
		for _, e := range c.Entities {
			pairs[e.Key] = e.Key
		}
		q := RemapQuestions(c, c, pairs)
		if !strings.HasPrefix(q, strings.Join(c.Lines, "")) {
			t.Error("remapped questions do not start with the candidate's lines")
		}
	})
}

func FuzzNumbers(f *testing.F) {
	for _, s := range []string{"0", " +1_000 ", "-7", "١٢", "1.5e3", "inf", "nan", "1__0", ".", "e5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if i, ok := pyInt(s); ok {
			// The canonical text is an int of its own, unchanged.
			if j, ok := pyInt(i); !ok || j != i {
				t.Errorf("pyInt(%q) = %q, which reads back as %q, %v", s, i, j, ok)
			}
			if f, ok := pyFloat(s); !ok || (len(i) < 15 && f != mustFloat(t, i)) {
				t.Errorf("pyInt(%q) = %q but pyFloat = %v, %v", s, i, f, ok)
			}
		}
		if v, ok := pyFloat(s); ok && !math.IsNaN(v) {
			if w, ok := pyFloat(strconv.FormatFloat(v, 'g', -1, 64)); !ok || w != v {
				t.Errorf("pyFloat(%q) = %v does not read back", s, v)
			}
		}
	})
}

func mustFloat(t *testing.T, s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func FuzzConvertBoxes(f *testing.F) {
	f.Add("A dog <box>[[100, 200, 500, 700]]</box>.", 640, 480)
	f.Add("<box>[[٣, 0, 1000, 99999999999999999999]]</box>", 1, 3000)
	f.Fuzz(func(t *testing.T, caption string, w, h int) {
		out, err := ConvertBoxes(caption, w, h)
		if (err != nil) != (w <= 0 || h <= 0) {
			t.Fatalf("ConvertBoxes(%dx%d): %v", w, h, err)
		}
		if err == nil && modelBoxRe.MatchString(out) && !modelBoxRe.MatchString(caption) {
			t.Errorf("a box tag appeared: %q → %q", caption, out)
		}
	})
}

func FuzzReadCaptions(f *testing.F) {
	f.Add(`{"image": "a/b/c.jpg", "width": 4, "height": 3, "caption": "x"}` + "\n")
	f.Add(`[{"image_path": "a.jpg", "gt_response": "y"}]`)
	f.Fuzz(func(t *testing.T, data string) {
		caps, err := ReadCaptions(strings.NewReader(data))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, c := range caps {
			if seen[c.Image] || c.Width < 0 || c.Height < 0 || strings.Count(c.Image, "/") > 2 {
				t.Errorf("caption %+v", c)
			}
			seen[c.Image] = true
		}
	})
}
