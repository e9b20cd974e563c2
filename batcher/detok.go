package batcher

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/model/sample"
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
// It relies on Decode(ids[:k]) being a prefix of Decode(ids[:k+1]) once an
// incomplete trailing character is set aside, which holds for SentencePiece.
// Every push decodes the whole stage, O(n) per token, which is small next to
// a forward step for the stage lengths of PancapChain.
type detok struct {
	tok  engine.Tokenizer
	ids  []int32
	stop *sample.StopMatcher
	fed  int // bytes of the left-stripped decoded text fed to stop
	sent int // bytes of stop.Text() streamed
}

// newDetok returns a detokeniser honouring the stop strings.
func newDetok(tok engine.Tokenizer, stops []string) *detok {
	return &detok{tok: tok, stop: sample.NewStopMatcher(stops)}
}

// push adds a generated id and returns the text that became safe to stream
// and whether a stop string has appeared.
func (d *detok) push(id int32) (delta string, stopped bool) {
	d.ids = append(d.ids, id)
	d.feed(completePrefix(d.decoded()))
	return d.emit(), d.stop.Stopped()
}

// finish returns the last delta and the stage's final text.
func (d *detok) finish() (delta, text string) {
	d.feed(d.decoded())
	text = strings.TrimRightFunc(d.stop.Text(), pySpace)
	if len(text) > d.sent {
		delta = text[d.sent:]
	}
	d.sent = len(text)
	return delta, text
}

// decoded returns the left-stripped text of all ids.
func (d *detok) decoded() string {
	return strings.TrimLeftFunc(d.tok.Decode(d.ids), pySpace)
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

// completePrefix drops a trailing U+FFFD or incomplete UTF-8 sequence: the
// bytes of a character that later tokens may still complete.
func completePrefix(s string) string {
	for len(s) > 0 {
		r, size := utf8.DecodeLastRuneInString(s)
		if r != utf8.RuneError {
			break
		}
		s = s[:len(s)-size]
	}
	return s
}

// pySpace reports whether Python's str.isspace() holds for r: Unicode
// White_Space plus the separators U+001C–U+001F.
func pySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}
