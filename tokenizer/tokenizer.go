// Package tokenizer is LLaMA's SentencePiece BPE tokenizer in pure Go: it
// reads the ModelProto of a tokenizer.model and reproduces, id for id and byte
// for byte, what the slow transformers 4.37.2 LlamaTokenizer (legacy
// behaviour, its default) gives: encode(text) with add_special_tokens and
// decode(ids, skip_special_tokens=True). It also implements LLaVA's
// tokenizer_image_token and an incremental detokeniser for streaming.
//
// Encoding follows the slow tokenizer: the text is split at the literal
// special tokens "<unk>", "<s>" and "</s>" (which become their ids), and each
// other chunk is tokenised separately by sentencepiece, so every chunk gets
// its own dummy-prefix "▁" (the legacy behaviour). Sentencepiece normalises
// with the model's NormalizerSpec (identity for LLaMA: no Unicode
// normalisation, spaces become "▁", a "▁" is prepended), applies the BPE
// merges by score, and spells characters missing from the vocabulary as
// <0xNN> byte pieces.
//
// Parity with transformers is checked by golden files in testdata/, written
// by tools/reference/tokenizer_golden.py (run it from the repository root
// with the project's .venv after changing a preset tokenizer).
package tokenizer

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/pancap-serve/pancap/engine"
)

// spaceSymbol is U+2581 LOWER ONE EIGHTH BLOCK, sentencepiece's visible space.
const spaceSymbol = "\u2581"

// Tokenizer is a loaded SentencePiece BPE model. It is immutable and safe for
// concurrent use.
type Tokenizer struct {
	model    *Model
	pieces   map[string]int32 // Normal, UserDefined and Unused pieces: the merge targets
	reserved map[string]int32 // Control, Unknown and Byte pieces
	byteID   [256]int32       // id of <0xNN>, or the unk id when missing
	bytes    []int16          // per id: the byte of a Byte piece, else -1
	user     map[string]bool  // user-defined symbols, matched verbatim
	userMax  int              // longest user-defined symbol in bytes
	special  []string         // texts split off before sentencepiece: unk, bos, eos
}

var _ engine.Tokenizer = (*Tokenizer)(nil)

// Load reads and parses a tokenizer.model file.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse builds a Tokenizer from the bytes of a tokenizer.model.
func Parse(data []byte) (*Tokenizer, error) {
	m, err := ParseModel(data)
	if err != nil {
		return nil, err
	}
	return newTokenizer(m), nil
}

// newTokenizer builds the lookup tables of a model that ParseModel has
// validated.
func newTokenizer(m *Model) *Tokenizer {
	t := &Tokenizer{
		model:    m,
		pieces:   make(map[string]int32, len(m.Pieces)),
		reserved: make(map[string]int32),
		bytes:    make([]int16, len(m.Pieces)),
		user:     make(map[string]bool),
	}
	for i, p := range m.Pieces {
		t.bytes[i] = -1
		switch p.Type {
		case Normal, UserDefined, Unused:
			t.pieces[p.Text] = int32(i)
		default:
			t.reserved[p.Text] = int32(i)
		}
		if p.Type == UserDefined {
			t.user[p.Text] = true
			t.userMax = max(t.userMax, len(p.Text))
		}
	}
	for b := range 256 {
		t.byteID[b] = t.pieceToID(fmt.Sprintf("<0x%02X>", b))
	}
	for i, p := range m.Pieces {
		if p.Type == Byte {
			b, _ := pieceByte(p.Text)
			t.bytes[i] = int16(b)
		}
	}
	for _, id := range []int32{m.UnkID, m.BosID, m.EosID} {
		if id >= 0 && !slices.Contains(t.special, m.Pieces[id].Text) {
			t.special = append(t.special, m.Pieces[id].Text)
		}
	}
	return t
}

// Model returns the parsed model. It must not be modified.
func (t *Tokenizer) Model() *Model { return t.model }

// BOS returns the id of <s>.
func (t *Tokenizer) BOS() int32 { return t.model.BosID }

// EOS returns the id of </s>.
func (t *Tokenizer) EOS() int32 { return t.model.EosID }

// UNK returns the id of <unk>.
func (t *Tokenizer) UNK() int32 { return t.model.UnkID }

// VocabSize returns the number of pieces.
func (t *Tokenizer) VocabSize() int { return len(t.model.Pieces) }

// Piece returns the text of piece id ("▁the", "<0x0A>", "<s>"), or "" when
// id is out of range.
func (t *Tokenizer) Piece(id int32) string {
	if id < 0 || int(id) >= len(t.model.Pieces) {
		return ""
	}
	return t.model.Pieces[id].Text
}

// isSpecial reports whether id is one of the tokens that
// decode(skip_special_tokens=True) drops: unk, bos and eos.
func (t *Tokenizer) isSpecial(id int32) bool {
	return id == t.model.UnkID || id == t.model.BosID || id == t.model.EosID
}

// pieceToID is sentencepiece's PieceToId: reserved pieces first, then the
// others, else the unk id.
func (t *Tokenizer) pieceToID(s string) int32 {
	if id, ok := t.reserved[s]; ok {
		return id
	}
	if id, ok := t.pieces[s]; ok {
		return id
	}
	return t.model.UnkID
}

// Encode tokenises text as LlamaTokenizer.encode does (legacy behaviour);
// bos prepends the BOS id (add_special_tokens). The literal texts "<s>",
// "</s>" and "<unk>" in text become their ids. Bytes of text that are not
// valid UTF-8 are read as U+FFFD, one per byte, as sentencepiece's
// normaliser does.
func (t *Tokenizer) Encode(text string, bos bool) []int32 {
	ids := make([]int32, 0, len(text)/3+2)
	if bos && t.model.BosID >= 0 {
		ids = append(ids, t.model.BosID)
	}
	for len(text) > 0 {
		at, special := t.nextSpecial(text)
		ids = t.encodeChunk(ids, text[:at])
		if special == "" {
			break
		}
		ids = append(ids, t.pieceToID(special))
		text = text[at+len(special):]
	}
	return ids
}

// nextSpecial finds the leftmost special-token text in s: its offset and
// text, or len(s) and "" when there is none. At one offset the longest
// special token wins, as in transformers' Trie.split.
func (t *Tokenizer) nextSpecial(s string) (int, string) {
	for i := 0; i < len(s); i++ {
		if s[i] != '<' {
			continue
		}
		best := ""
		for _, sp := range t.special {
			if len(sp) > len(best) && strings.HasPrefix(s[i:], sp) {
				best = sp
			}
		}
		if best != "" {
			return i, best
		}
	}
	return len(s), ""
}

// EncodeImagePrompt tokenises a prompt holding "<image>" placeholders as
// LLaVA's tokenizer_image_token does, with imageTokens image positions per
// placeholder: the prompt is split at "<image>", the first chunk is encoded
// with a BOS, later chunks without one, and imageTokens engine.ImageToken
// ids go where each "<image>" was. With imageTokens 1 the result equals the
// input_ids of the reference (one -200 per image); the batcher passes the
// model's image token count, the positions the vision tower's rows fill.
// It is the one image-prompt tokeniser: serving and the golden tests share it.
func EncodeImagePrompt(t engine.Tokenizer, prompt string, imageTokens int) []int32 {
	var ids []int32
	for k, chunk := range strings.Split(prompt, "<image>") {
		if k > 0 {
			for range imageTokens {
				ids = append(ids, engine.ImageToken)
			}
		}
		ids = append(ids, t.Encode(chunk, k == 0)...)
	}
	return ids
}

// normalize applies the NormalizerSpec (no charsmap): invalid UTF-8 bytes
// become U+FFFD, spaces become "▁" (escape_whitespaces), a "▁" is prepended
// (add_dummy_prefix) and, with remove_extra_whitespaces, leading, trailing
// and repeated spaces are dropped. Empty input stays empty.
func (t *Tokenizer) normalize(s string) string {
	m := t.model
	if m.RemoveExtraWhitespaces {
		s = strings.TrimLeft(s, " ")
	}
	if s == "" {
		return ""
	}
	space := " "
	if m.EscapeWhitespaces {
		space = spaceSymbol
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/2 + 3)
	if m.AddDummyPrefix {
		b.WriteString(space)
	}
	prevSpace := m.RemoveExtraWhitespaces
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == ' ':
			if !(m.RemoveExtraWhitespaces && prevSpace) {
				b.WriteString(space)
			}
			prevSpace = true
			continue
		case r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i-n : i])
		}
		prevSpace = false
	}
	out := b.String()
	if m.RemoveExtraWhitespaces {
		out = strings.TrimRight(out, space)
	}
	return out
}

// encodeChunk appends the sentencepiece encoding of text (no special tokens
// inside) to ids.
func (t *Tokenizer) encodeChunk(ids []int32, text string) []int32 {
	norm := t.normalize(text)
	if norm == "" {
		return ids
	}
	prevUnk := false
	for _, piece := range t.bpe(norm) {
		id := t.pieceToID(piece)
		if id != t.model.UnkID {
			ids = append(ids, id)
			prevUnk = false
			continue
		}
		if t.model.ByteFallback {
			for i := 0; i < len(piece); i++ {
				ids = append(ids, t.byteID[piece[i]])
			}
			continue
		}
		// Without byte fallback sentencepiece merges a run of unknown
		// pieces into one <unk>.
		if !prevUnk {
			ids = append(ids, id)
		}
		prevUnk = true
	}
	return ids
}
