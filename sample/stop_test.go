package sample

import (
	"strings"
	"testing"
)

// stream feeds deltas one by one and collects what Emit hands out, then
// Flush when no stop string came.
func stream(m *StopMatcher, deltas []string) (emitted string, stopped bool) {
	var sb strings.Builder
	for _, d := range deltas {
		stopped = m.Feed(d)
		sb.WriteString(m.Emit())
		if stopped {
			return sb.String(), true
		}
	}
	sb.WriteString(m.Flush())
	return sb.String(), false
}

func TestStopMatcher(t *testing.T) {
	tests := []struct {
		name    string
		stops   []string
		deltas  []string
		want    string
		stopped bool
	}{
		{"no stops", nil, []string{"a", "b"}, "ab", false},
		{"empty stop ignored", []string{""}, []string{"a", "b"}, "ab", false},
		{"inside one delta", []string{"###"}, []string{"hello ### world"}, "hello ", true},
		{"across deltas", []string{"###"}, []string{"hello #", "#", "# world"}, "hello ", true},
		{"partial then mismatch", []string{"###"}, []string{"a #", "#b", " c"}, "a ##b c", false},
		{"held tail flushed at the end", []string{"</s>"}, []string{"text </"}, "text </", false},
		{"earliest of several", []string{"world", "lo w"}, []string{"hello world"}, "hel", true},
		{"stop at the very start", []string{"STOP"}, []string{"ST", "OP more"}, "", true},
		{"multibyte stop", []string{"é!"}, []string{"caf", "é", "!"}, "caf", true},
		{"stop after text fed again", []string{"x"}, []string{"ax", "b"}, "a", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewStopMatcher(tt.stops)
			got, stopped := stream(m, tt.deltas)
			if got != tt.want || stopped != tt.stopped {
				t.Errorf("emitted %q, stopped %v; want %q, %v", got, stopped, tt.want, tt.stopped)
			}
			if m.Text() != tt.want {
				t.Errorf("Text() = %q, want %q", m.Text(), tt.want)
			}
			if m.Stopped() != tt.stopped {
				t.Errorf("Stopped() = %v", m.Stopped())
			}
		})
	}
}

func TestStopMatcherHold(t *testing.T) {
	m := NewStopMatcher([]string{"abc", "bd"})
	steps := []struct {
		delta string
		hold  int
		emit  string
	}{
		{"xa", 1, "x"},  // "a" may start "abc"
		{"b", 2, ""},    // "ab" may start "abc", "b" may start "bd"
		{"x", 0, "abx"}, // no longer
		{"b", 1, ""},    // "b" may start "bd"
		{"b", 1, "b"},   // the first "b" is safe now
		{"c", 0, "bc"},  // "bc" starts nothing
		{"ab", 2, ""},   // "ab"
		{"d", 0, "a"},   // "bd" found: the text before it is all safe
	}
	for i, s := range steps {
		m.Feed(s.delta)
		if h := m.Hold(); h != s.hold {
			t.Errorf("step %d: Hold() = %d, want %d", i, h, s.hold)
		}
		if e := m.Emit(); e != s.emit {
			t.Errorf("step %d: Emit() = %q, want %q", i, e, s.emit)
		}
	}
	if !m.Stopped() || m.Text() != "xabxbbca" {
		t.Errorf("Stopped %v, Text %q; want true, %q", m.Stopped(), m.Text(), "xabxbbca")
	}
	if e := m.Emit(); e != "" {
		t.Errorf("second Emit after the stop = %q, want nothing", e)
	}
	if m.Feed("more") != true || m.Text() != "xabxbbca" {
		t.Error("Feed after the stop changed the text")
	}
}

func TestZeroStopMatcher(t *testing.T) {
	var m StopMatcher
	if m.Feed("abc") || m.Hold() != 0 || m.Emit() != "abc" || m.Flush() != "" {
		t.Error("the zero StopMatcher must pass text through")
	}
}
