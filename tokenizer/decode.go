package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// decoder is the state of detokenisation as LlamaTokenizer.decode(ids,
// skip_special_tokens=True) performs it, fed one id at a time:
//
//   - unk, bos and eos ids are skipped, and so are ids out of range;
//   - the first remaining piece loses one leading "▁" (convert_tokens_to_string),
//     and the stripped text is looked up again as a piece;
//   - then sentencepiece's Decode: control pieces are invisible, "▁" becomes a
//     space, and a leading "▁" is dropped once more while nothing visible has
//     been produced (add_dummy_prefix); runs of byte pieces are read as UTF-8
//     with one U+FFFD per byte that does not start a valid character.
//
// Text is produced as soon as it can no longer change: the bytes of a byte
// run that may still become a character are held in pending.
type decoder struct {
	t         *Tokenizer
	started   bool   // the first non-special piece has been seen
	bosWsSeen bool   // the previous piece consumed the leading "▁"
	isBosWs   bool   // a leading "▁" may still be consumed
	nonEmpty  bool   // some text has been produced
	pending   []byte // trailing byte-piece bytes not yet decoded
}

func (t *Tokenizer) newDecoder() decoder {
	return decoder{t: t, isBosWs: true}
}

// push feeds one id and appends the text that became final to out.
func (d *decoder) push(out []byte, id int32) []byte {
	t := d.t
	if id < 0 || int(id) >= len(t.model.Pieces) || t.isSpecial(id) {
		return out
	}
	piece := t.model.Pieces[id].Text
	if !d.started {
		d.started = true
		if rest, ok := strings.CutPrefix(piece, spaceSymbol); ok {
			piece = rest
			id = t.pieceToID(rest)
		}
	}
	if b := t.bytes[id]; b >= 0 {
		d.pending = append(d.pending, byte(b))
		return d.drain(out, false)
	}
	out = d.drain(out, true)
	if d.bosWsSeen || d.nonEmpty {
		d.isBosWs = false
	}
	start := len(out)
	out, d.bosWsSeen = d.piece(out, piece, id)
	d.nonEmpty = d.nonEmpty || len(out) > start
	return out
}

// piece appends the surface of one non-byte piece (sentencepiece's
// DecodeSentencePiece) and reports whether it consumed a leading "▁".
func (d *decoder) piece(out []byte, piece string, id int32) ([]byte, bool) {
	m := d.t.model
	switch m.Pieces[id].Type {
	case Control:
		return out, false
	case Unknown:
		if m.Pieces[id].Text == piece {
			return append(out, m.UnkSurface...), false
		}
		return append(out, piece...), false
	}
	consumed := false
	if d.isBosWs && (m.AddDummyPrefix || m.RemoveExtraWhitespaces) {
		piece, consumed = strings.CutPrefix(piece, spaceSymbol)
		if m.RemoveExtraWhitespaces {
			consumed = false
		}
	}
	for {
		before, after, found := strings.Cut(piece, spaceSymbol)
		out = append(out, before...)
		if !found {
			return out, consumed
		}
		out = append(out, ' ')
		piece = after
	}
}

// drain decodes the pending bytes: every complete character, and every byte
// that can start no character as U+FFFD; with all, also the trailing bytes
// that could still be completed (each as U+FFFD, as at the end of a run).
func (d *decoder) drain(out []byte, all bool) []byte {
	p := d.pending
	for len(p) > 0 {
		if !all && !utf8.FullRune(p) {
			break
		}
		r, n := utf8.DecodeRune(p)
		if r == utf8.RuneError && n == 1 {
			out = append(out, "\uFFFD"...)
		} else {
			out = append(out, p[:n]...)
		}
		p = p[n:]
		d.nonEmpty = true
	}
	d.pending = append(d.pending[:0], p...)
	return out
}

// Decode returns the text of ids as LlamaTokenizer.decode(ids,
// skip_special_tokens=True) does (transformers 4.37.2, legacy): unk, bos and
// eos are dropped, the first piece loses its leading "▁", byte pieces are
// joined into UTF-8 with U+FFFD for each invalid byte. Ids out of range
// (including engine.ImageToken) are skipped.
func (t *Tokenizer) Decode(ids []int32) string {
	d := t.newDecoder()
	var out []byte
	for _, id := range ids {
		out = d.push(out, id)
	}
	return string(d.drain(out, true))
}

// StreamDecoder turns a stream of generated ids into text deltas.
//
// Invariant: after Push(id₁) … Push(idₙ), the concatenation of every delta
// returned so far is a prefix of Strip(Decode(id₁ … idₙ, x…)) for every
// continuation x…; and once Flush has returned, the concatenation of all
// deltas including Flush's equals Strip(Decode(id₁ … idₙ)) exactly. Hence a
// delta never holds a byte of a character that a later byte piece completes,
// never leading whitespace (Python's str.strip removes it from the final
// text), and whitespace is held back until non-whitespace text follows it.
// Every delta is valid UTF-8. Push costs O(1) amortised per id.
//
// Flush resets the decoder, so one StreamDecoder can serve stage after
// stage. A StreamDecoder is not safe for concurrent use.
type StreamDecoder struct {
	t       *Tokenizer
	d       decoder
	buf     []byte
	started bool   // some non-whitespace text has been emitted
	held    []byte // whitespace waiting for non-whitespace text
}

// NewStreamDecoder returns a StreamDecoder for t.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder {
	return &StreamDecoder{t: t, d: t.newDecoder()}
}

// Push feeds one generated id and returns the text that became final.
func (s *StreamDecoder) Push(id int32) string {
	s.buf = s.d.push(s.buf[:0], id)
	return s.emit(s.buf)
}

// Flush ends the stream: it returns the remaining text (incomplete byte
// sequences as U+FFFD, trailing whitespace dropped) and resets s.
func (s *StreamDecoder) Flush() string {
	out := s.emit(s.d.drain(s.buf[:0], true))
	*s = StreamDecoder{t: s.t, d: s.t.newDecoder(), buf: s.buf[:0]}
	return out
}

// emit applies Strip's rules to newly final text: leading whitespace is
// dropped, trailing whitespace held until more text arrives.
func (s *StreamDecoder) emit(text []byte) string {
	if !s.started {
		text = []byte(strings.TrimLeftFunc(string(text), IsSpace))
		if len(text) == 0 {
			return ""
		}
		s.started = true
	}
	body := strings.TrimRightFunc(string(text), IsSpace)
	if body == "" {
		s.held = append(s.held, text...)
		return ""
	}
	out := string(s.held) + body
	s.held = append(s.held[:0], text[len(body):]...)
	return out
}

// IsSpace reports whether Python's str.isspace holds for r: Unicode
// White_Space plus the separators U+001C to U+001F.
func IsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// Strip removes leading and trailing whitespace as Python's str.strip()
// does (see IsSpace); the server reports stage texts stripped this way.
func Strip(s string) string {
	return strings.TrimFunc(s, IsSpace)
}
