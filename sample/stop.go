package sample

import "strings"

// StopMatcher watches the decoded text of one generation for stop strings.
// Feed it each new piece of text; it tells whether a stop string appeared,
// which text to keep (everything before the earliest stop string), and how
// much of the end of the text must be held back from streaming because it
// could be the beginning of a stop string. Matching is on bytes; since stop
// strings are valid UTF-8, a held-back suffix of valid UTF-8 text starts on
// a rune boundary. The zero value has no stop strings.
type StopMatcher struct {
	stops   []string
	longest int    // bytes of the longest stop string
	text    []byte // text so far, cut before the stop string once stopped
	sent    int    // bytes of text already handed out by Emit
	stopped bool
}

// NewStopMatcher returns a matcher for stops; empty strings are ignored.
func NewStopMatcher(stops []string) *StopMatcher {
	m := &StopMatcher{}
	for _, s := range stops {
		if s != "" {
			m.stops = append(m.stops, s)
			m.longest = max(m.longest, len(s))
		}
	}
	return m
}

// Feed appends delta to the text and reports whether a stop string has
// appeared (now or before). Once stopped, further text is ignored.
func (m *StopMatcher) Feed(delta string) bool {
	if m.stopped {
		return true
	}
	old := len(m.text)
	m.text = append(m.text, delta...)
	// A stop string wholly inside the old text would have been found
	// before, so a new match ends in delta and starts at most longest-1
	// bytes before it.
	from := max(0, old-m.longest+1)
	window := string(m.text[from:])
	at := -1
	for _, s := range m.stops {
		if i := strings.Index(window, s); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at >= 0 {
		m.text = m.text[:from+at] // never shorter than sent: Hold kept the match back
		m.stopped = true
	}
	return m.stopped
}

// Stopped reports whether a stop string has appeared.
func (m *StopMatcher) Stopped() bool { return m.stopped }

// Text returns the text to keep: everything fed so far, or, once stopped,
// everything before the earliest stop string.
func (m *StopMatcher) Text() string { return string(m.text) }

// Hold returns how many bytes at the end of Text might begin a stop string
// and so must not be streamed yet: the longest suffix of Text that is a
// proper prefix of a stop string. It is 0 once stopped.
func (m *StopMatcher) Hold() int {
	if m.stopped {
		return 0
	}
	hold := 0
	for _, s := range m.stops {
		for k := min(len(s)-1, len(m.text)); k > hold; k-- {
			if string(m.text[len(m.text)-k:]) == s[:k] {
				hold = k
				break
			}
		}
	}
	return hold
}

// Emit returns the text that became safe to stream since the last Emit:
// up to Text minus Hold, or all of Text once stopped.
func (m *StopMatcher) Emit() string {
	end := len(m.text) - m.Hold()
	if end <= m.sent {
		return ""
	}
	out := string(m.text[m.sent:end])
	m.sent = end
	return out
}

// Flush returns all text not yet emitted, held-back bytes included: call it
// when generation ended without a stop string (EOS or the token limit).
func (m *StopMatcher) Flush() string {
	out := string(m.text[m.sent:])
	m.sent = len(m.text)
	return out
}
