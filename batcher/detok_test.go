package batcher

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// stream feeds ids through a detok as the step loop does (stopping at a stop
// string) and returns the deltas, the final text and whether it stopped.
func streamIDs(ids []int32, stops []string) (deltas []string, text string, stopped bool) {
	d := newDetok(fakeTokenizer{}, stops)
	for _, id := range ids {
		delta, st := d.push(id)
		if delta != "" {
			deltas = append(deltas, delta)
		}
		if st {
			stopped = true
			break
		}
	}
	last, text := d.finish()
	if last != "" {
		deltas = append(deltas, last)
	}
	return deltas, text, stopped
}

func TestDetok(t *testing.T) {
	enc := func(s string) []int32 { return fakeTokenizer{}.Encode(s, false) }
	cases := []struct {
		name, in string
		stops    []string
		want     string
		deltas   []string
	}{
		{"strip", "  \n hello  world \n ", nil, "hello  world",
			[]string{"h", "e", "l", "l", "o", "  w", "o", "r", "l", "d"}},
		{"utf8", "aé中", nil, "aé中", []string{"a", "é", "中"}},
		{"stop", "one two</s>three", []string{"</s>", "xx"}, "one two",
			[]string{"o", "n", "e", " t", "w", "o"}},
		{"stop prefix released", "a<b c", []string{"<bx"}, "a<b c", []string{"a", "<b", " c"}},
		{"incomplete tail", "ab\xe4\xb8", nil, "ab\uFFFD", []string{"a", "b", "\uFFFD"}},
		{"python space", "\x1c\u00a0x\u2003", nil, "x", []string{"x"}},
	}
	for _, c := range cases {
		deltas, text, _ := streamIDs(enc(c.in), c.stops)
		if text != c.want || strings.Join(deltas, "|") != strings.Join(c.deltas, "|") {
			t.Errorf("%s: text %q deltas %q, want %q %q", c.name, text, deltas, c.want, c.deltas)
		}
	}
}

// FuzzDetok checks the streaming invariants on arbitrary byte tokens and a
// stop string: deltas are valid UTF-8 when the text is, they concatenate to
// the final text, and the final text is strip(decode(ids)) cut before the
// earliest stop string.
func FuzzDetok(f *testing.F) {
	f.Add([]byte("  hello world  "), "")
	f.Add([]byte("a\xc3\xa9 \xe4\xb8\xad\n\n"), "\n\n")
	f.Add([]byte("x\xe4\xb8"), "\uFFFD")
	f.Add([]byte("stop here</s> and more"), "</s>")
	f.Fuzz(func(t *testing.T, data []byte, stop string) {
		if !utf8.ValidString(stop) {
			t.Skip()
		}
		var stops []string
		if stop != "" {
			stops = []string{stop}
		}
		ids := fakeTokenizer{}.Encode(string(data), false)
		deltas, text, stopped := streamIDs(ids, stops)
		joined := strings.Join(deltas, "")
		if joined != text {
			t.Fatalf("deltas %q join to %q, final text %q", deltas, joined, text)
		}
		for _, d := range deltas {
			if !utf8.ValidString(d) {
				t.Fatalf("delta %q is not valid UTF-8", d)
			}
		}
		want := strings.TrimLeftFunc(fakeTokenizer{}.Decode(ids), pySpace)
		if stop != "" {
			if i := strings.Index(want, stop); i >= 0 {
				want = want[:i]
			} else if stopped {
				t.Fatalf("stopped on %q absent from %q", stop, want)
			}
		}
		if want = strings.TrimRightFunc(want, pySpace); text != want {
			t.Fatalf("text %q, want %q", text, want)
		}
	})
}
