package wordnet

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeDB writes a tiny database: dog (and its plural by rule), mouse (and
// mice by exception), an index entry "caps" of its own, and the licence
// header lines that the reader skips.
func writeDB(t *testing.T, index, data, exc string) string {
	t.Helper()
	dir := t.TempDir()
	header := "  1 This is a licence header line.  \n"
	for name, body := range map[string]string{"index.noun": header + index, "data.noun": header + data, "noun.exc": exc} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const (
	testIndex = "cap n 1 0 1 0 00000003  \ncaps n 1 0 1 0 00000004  \ndog n 2 1 @ 2 1 00000001 00000002  \nmouse n 1 0 1 0 00000005  \n"
	testData  = "00000001 05 n 02 dog 0 domestic_dog 0 000 | a dog  \n" +
		"00000002 10 n 01 frump 0 000 | a woman  \n" +
		"00000003 06 n 02 cap 0 Cap(p) 1 000 | a hat  \n" +
		"00000004 06 n 01 CAPS 0 000 | capital letters  \n" +
		"00000005 05 n 01 mouse 0 000 | a rodent  \n"
	testExc = "mice mouse\nmice mouse\n"
)

func TestSynonyms(t *testing.T) {
	wn, err := Open(writeDB(t, testIndex, testData, testExc))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		word string
		want []string
	}{
		{"dog", []string{"dog", "domestic_dog", "frump"}},
		{"DOGS", []string{"dog", "domestic_dog", "frump"}}, // lower-cased, then "s" dropped
		{"mice", []string{"mouse"}},                        // the exception list
		{"caps", []string{"CAPS", "Cap", "cap"}},           // the word and its first round together
		{"capses", []string{"CAPS"}},                       // the first round finds "caps": no second round
		{"cat", nil},
		{"\u0130", nil}, // Python lowers İ to i + combining dot, not to i
	} {
		if got := wn.Synonyms(c.word); !slices.Equal(got, c.want) {
			t.Errorf("Synonyms(%q) = %q, want %q", c.word, got, c.want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, c := range []struct{ index, data, exc, want string }{
		{"dog n x 0 1 0 00000001\n", testData, "", "bad synset count"},
		{"dog n 1 0 2 0 00000001\n", testData, "", "sense count"},
		{"dog n 1 3 @ 1 0 00000001\n", testData, "", "bad pointer count"},
		{"dog n 1 0 1 0 0000000x\n", testData, "", "bad offset"},
		{testIndex, "00000001 05 n zz dog 0 000 | x\n", "", "bad word count"},
		{testIndex, "00000001 05 n 03 dog 0 000 | x\n", "", "bad word count"},
		{testIndex, "x 05 n 01 dog 0 000 | x\n", "", "bad offset"},
		{testIndex, testData, "\t\n", "blank exception line"},
	} {
		_, err := Open(writeDB(t, c.index, c.data, c.exc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q %q: %v, want %q", c.index, c.data, c.exc, err, c.want)
		}
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "index.noun") {
		t.Errorf("empty directory: %v", err)
	}
}

// TestMorphyBounded: suffix rules on a long word that branches at every
// round finish at once (the authors' morphy would branch exponentially).
func TestMorphyBounded(t *testing.T) {
	wn, err := Open(writeDB(t, testIndex, testData, testExc))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got := wn.Synonyms(strings.Repeat("ses", 300)); got != nil {
		t.Errorf("Synonyms = %q", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(testIndex, testData, testExc)
	f.Add("a n 1 1 @ 1 0 1\n", "1 0 n 1 a 0 | x\n", "a b c\n")
	f.Fuzz(func(t *testing.T, index, data, exc string) {
		dir := t.TempDir()
		for name, body := range map[string]string{"index.noun": index, "data.noun": data, "noun.exc": exc} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		wn, err := Open(dir)
		if err != nil {
			return
		}
		for w := range wn.index {
			got := wn.Synonyms(w + "s")
			if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
				t.Errorf("Synonyms(%q) = %q: not sorted and unique", w+"s", got)
			}
		}
	})
}
