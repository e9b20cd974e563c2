package batcher

import (
	"strings"
	"unicode"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/sample"
)

// detok turns one stage's generated ids into streamed text deltas.
//
// The stage's final text is Python's str.strip() of tok.Decode(ids), cut
// before the earliest stop string. Deltas are chosen so that their
// concatenation is exactly that text:
//   - the decoded text is left-stripped before anything is streamed, so the
//     leading whitespace of the first tokens never reaches the reader;
//   - trailing whitespace is held back until a non-space character follows
//     it (and dropped if none ever does, as strip() drops it);
//   - a trailing U+FFFD or incomplete UTF-8 sequence (a character whose
//     bytes span several byte-fallback tokens) is held back until the
//     character is complete, so a delta never splits a UTF-8 sequence;
//   - a tail that could begin a stop string is held back (sample.StopMatcher).
//
// Decoding is incremental, as vLLM's detokenize_incrementally: each push
// decodes a short window of recent ids twice, with and without the ids not
// yet read, and appends the difference. Both decodes drop the leading space
// of the window's first piece alike, so the difference is exact as long as
// the window's already-read part decodes to some text (windows only start
// where it does). A window whose text ends in U+FFFD waits for the ids that
// complete the character. finish decodes the
// whole stage once, so the final text is strip(Decode(ids)) by construction;
// this relies on Decode(ids[:k]) being a prefix of Decode(ids) once an
// incomplete trailing character is set aside, as holds for SentencePiece.
type detok struct {
	tok    engine.Tokenizer
	ids    []int32
	prefix int             // start of the decode window
	read   int             // ids before read are in text
	text   strings.Builder // decoded text of ids[:read]
	stop   *sample.StopMatcher
	fed    int // bytes of the left-stripped text fed to stop
	sent   int // bytes of stop.Text() streamed
}

// newDetok returns a detokeniser honouring the stop strings.
func newDetok(tok engine.Tokenizer, stops []string) *detok {
	return &detok{tok: tok, stop: sample.NewStopMatcher(stops)}
}

// push adds a generated id and returns the text that became safe to stream
// and whether a stop string has appeared.
func (d *detok) push(id int32) (delta string, stopped bool) {
	d.ids = append(d.ids, id)
	prev := d.tok.Decode(d.ids[d.prefix:d.read])
	cur := d.tok.Decode(d.ids[d.prefix:])
	if len(cur) > len(prev) && strings.HasPrefix(cur, prev) && !strings.HasSuffix(cur, "\uFFFD") {
		d.text.WriteString(cur[len(prev):])
		// The next window starts at the old read point unless the ids
		// since then decode to nothing on their own (a lone "▁" loses its
		// space at a window start and makes the next piece lose its own).
		if d.tok.Decode(d.ids[d.read:]) != "" {
			d.prefix = d.read
		}
		d.read = len(d.ids)
		d.feed(strings.TrimLeftFunc(d.text.String(), pySpace))
	}
	return d.emit(), d.stop.Stopped()
}

// finish returns the last delta and the stage's final text.
func (d *detok) finish() (delta, text string) {
	d.feed(strings.TrimLeftFunc(d.tok.Decode(d.ids), pySpace))
	text = strings.TrimRightFunc(d.stop.Text(), pySpace)
	if len(text) > d.sent {
		delta = text[d.sent:]
	}
	d.sent = len(text)
	return delta, text
}

// feed passes the part of full not yet fed to the stop matcher.
func (d *detok) feed(full string) {
	if len(full) > d.fed && !d.stop.Stopped() {
		d.stop.Feed(full[d.fed:])
		d.fed = len(full)
	}
}

// emit returns the new text up to what must be held back.
func (d *detok) emit() string {
	t := d.stop.Text()
	end := len(t) - d.stop.Hold()
	end = len(strings.TrimRightFunc(t[:end], pySpace))
	if end <= d.sent {
		return ""
	}
	out := t[d.sent:end]
	d.sent = end
	return out
}

// pySpace reports whether Python's str.isspace() holds for r: Unicode
// White_Space plus the separators U+001C–U+001F.
func pySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}
