package tokenizer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pancap-serve/pancap/engine"
)

func TestParseModelFields(t *testing.T) {
	tok := loadPreset(t, "tiny.model")
	m := tok.Model()
	if m.ModelType != BPE || !m.ByteFallback || m.UnkID != 0 || m.BosID != 1 || m.EosID != 2 || m.PadID != -1 {
		t.Errorf("trainer spec: type %d byte_fallback %v unk %d bos %d eos %d pad %d",
			m.ModelType, m.ByteFallback, m.UnkID, m.BosID, m.EosID, m.PadID)
	}
	if !m.AddDummyPrefix || m.RemoveExtraWhitespaces || !m.EscapeWhitespaces || m.NormalizerName != "identity" {
		t.Errorf("normalizer spec: %+v", m)
	}
	if tok.VocabSize() != 1000 || tok.BOS() != 1 || tok.EOS() != 2 || tok.UNK() != 0 {
		t.Errorf("vocab %d bos %d eos %d unk %d", tok.VocabSize(), tok.BOS(), tok.EOS(), tok.UNK())
	}
	wantTypes := map[int32]PieceType{0: Unknown, 1: Control, 2: Control, 3: Byte, 258: Byte, 259: Normal}
	for id, typ := range wantTypes {
		if got := m.Pieces[id].Type; got != typ {
			t.Errorf("piece %d %q has type %d, want %d", id, m.Pieces[id].Text, got, typ)
		}
	}
	if tok.Piece(3) != "<0x00>" || tok.Piece(1) != "<s>" || tok.Piece(-1) != "" || tok.Piece(1000) != "" {
		t.Errorf("Piece: %q %q %q %q", tok.Piece(3), tok.Piece(1), tok.Piece(-1), tok.Piece(1000))
	}
	// BPE merge scores decrease with the id in a trained model.
	if !(m.Pieces[259].Score > m.Pieces[300].Score) {
		t.Errorf("scores %v, %v not decreasing", m.Pieces[259].Score, m.Pieces[300].Score)
	}
}

// proto helpers build synthetic ModelProtos.
func protoPiece(text string, score float32, typ PieceType) []byte {
	var p []byte
	p = protowire.AppendTag(p, fieldPieceText, protowire.BytesType)
	p = protowire.AppendString(p, text)
	p = protowire.AppendTag(p, fieldPieceScore, protowire.Fixed32Type)
	p = protowire.AppendFixed32(p, math.Float32bits(score))
	p = protowire.AppendTag(p, fieldPieceType, protowire.VarintType)
	p = protowire.AppendVarint(p, uint64(typ))
	var out []byte
	out = protowire.AppendTag(out, fieldPieces, protowire.BytesType)
	return protowire.AppendBytes(out, p)
}

func protoModel(modelType ModelType, byteFallback bool, pieces ...[]byte) []byte {
	var ts []byte
	ts = protowire.AppendTag(ts, fieldModelType, protowire.VarintType)
	ts = protowire.AppendVarint(ts, uint64(modelType))
	ts = protowire.AppendTag(ts, fieldByteFallback, protowire.VarintType)
	ts = protowire.AppendVarint(ts, protowire.EncodeBool(byteFallback))
	ts = protowire.AppendTag(ts, fieldPadID, protowire.VarintType)
	ts = protowire.AppendVarint(ts, uint64(math.MaxUint64)) // -1 as int32 varint
	var ns []byte
	ns = protowire.AppendTag(ns, fieldRemoveExtraSpaces, protowire.VarintType)
	ns = protowire.AppendVarint(ns, 0)
	var out []byte
	for _, p := range pieces {
		out = append(out, p...)
	}
	out = protowire.AppendTag(out, fieldTrainerSpec, protowire.BytesType)
	out = protowire.AppendBytes(out, ts)
	out = protowire.AppendTag(out, fieldNormalizerSpec, protowire.BytesType)
	return protowire.AppendBytes(out, ns)
}

func basePieces() [][]byte {
	return [][]byte{
		protoPiece("<unk>", 0, Unknown), protoPiece("<s>", 0, Control), protoPiece("</s>", 0, Control),
	}
}

func TestParseSynthetic(t *testing.T) {
	// Merges: "a"+"b" (score -1) and "b"+"c" (score -0.5) compete in "abc":
	// the higher score wins, so "▁abc" is "▁", "a", "bc"; ties go left.
	pieces := append(basePieces(),
		protoPiece("bc", -0.5, Normal), protoPiece("ab", -1, Normal), protoPiece("▁", -2, Normal),
		protoPiece("a", -3, Normal), protoPiece("b", -3, Normal), protoPiece("c", -3, Normal),
		protoPiece("xy", -0.1, Unused), protoPiece("xyz", -0.2, Normal), protoPiece("x", -3, Normal),
		protoPiece("y", -3, Normal), protoPiece("z", -3, Normal))
	tok, err := Parse(protoModel(BPE, false, pieces...))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Model().PadID != -1 || tok.Model().RemoveExtraWhitespaces {
		t.Errorf("pad %d remove_extra_whitespaces %v", tok.Model().PadID, tok.Model().RemoveExtraWhitespaces)
	}
	if got, want := tok.Encode("abc", false), []int32{5, 6, 3}; !slices.Equal(got, want) {
		t.Errorf("Encode(abc) = %v, want %v", got, want)
	}
	// "xyz" merges through the Unused "xy" into the normal "xyz".
	if got, want := tok.Encode("xyz", true), []int32{1, 5, 10}; !slices.Equal(got, want) {
		t.Errorf("Encode(xyz) = %v, want %v", got, want)
	}
	// An Unused piece left over is split back into its parts.
	if got, want := tok.Encode("xy", false), []int32{5, 11, 12}; !slices.Equal(got, want) {
		t.Errorf("Encode(xy) = %v, want %v", got, want)
	}
	// Without byte fallback a run of unknown characters is one <unk>.
	if got, want := tok.Encode("a日本", false), []int32{5, 6, 0}; !slices.Equal(got, want) {
		t.Errorf("Encode(a日本) = %v, want %v", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	tiny, err := os.ReadFile(filepath.Join(presetDir, "tiny.model"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrInvalidModel},
		{"truncated", tiny[:len(tiny)/2], ErrInvalidModel},
		{"bad tag", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrInvalidModel},
		{"no unk", protoModel(BPE, false, protoPiece("a", 0, Normal)), ErrInvalidModel},
		{"two unk", protoModel(BPE, false, append(basePieces(), protoPiece("<u2>", 0, Unknown))...), ErrInvalidModel},
		{"duplicate", protoModel(BPE, false, append(basePieces(), protoPiece("<s>", 0, Normal))...), ErrInvalidModel},
		{"empty piece", protoModel(BPE, false, append(basePieces(), protoPiece("", 0, Normal))...), ErrInvalidModel},
		{"bad type", protoModel(BPE, false, append(basePieces(), protoPiece("q", 0, 9))...), ErrInvalidModel},
		{"bad byte", protoModel(BPE, true, append(basePieces(), protoPiece("<0xzz>", 0, Byte))...), ErrInvalidModel},
		{"byte no fallback", protoModel(BPE, false, append(basePieces(), protoPiece("<0x41>", 0, Byte))...), ErrInvalidModel},
		{"bos not control", protoModel(BPE, false, protoPiece("<unk>", 0, Unknown), protoPiece("<s>", 0, Normal),
			protoPiece("</s>", 0, Control)), ErrInvalidModel},
		{"unigram", protoModel(Unigram, false, basePieces()...), ErrUnsupported},
	}
	for _, c := range cases {
		if _, err := Parse(c.data); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.model")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestEncodeBOSAndImage(t *testing.T) {
	tok := loadPreset(t, "tiny.model")
	with, without := tok.Encode("Please localize", true), tok.Encode("Please localize", false)
	if with[0] != tok.BOS() || !slices.Equal(with[1:], without) {
		t.Errorf("Encode bos=true %v, bos=false %v", with, without)
	}
	ids := EncodeImagePrompt(tok, "a<image>b<image>", 1)
	if n := strings.Count("a<image>b<image>", "<image>"); countOf(ids, engine.ImageToken) != n || countOf(ids, tok.BOS()) != 1 {
		t.Errorf("EncodeImagePrompt = %v", ids)
	}
}

func TestConcurrentUse(t *testing.T) {
	tok := loadPreset(t, "tiny.model")
	text := "tree <box>[[1, 2, 3, 4]]</box>, 日本"
	want := tok.Encode(text, true)
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			for range 50 {
				if got := tok.Encode(text, true); !slices.Equal(got, want) {
					errs <- fmt.Sprint(got)
					return
				}
				tok.Decode(want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent Encode = %s, want %v", e, want)
	}
}

func countOf(ids []int32, x int32) int {
	n := 0
	for _, id := range ids {
		if id == x {
			n++
		}
	}
	return n
}

// randomIDs draws ids that stress detokenisation: byte pieces that form
// valid and cut UTF-8, special ids, whitespace pieces, arbitrary pieces.
func randomIDs(r *rand.Rand, tok *Tokenizer, n int) []int32 {
	byte0 := tok.byteID[0]
	ws := tok.pieceToID("▁")
	var ids []int32
	for len(ids) < n {
		switch c := r.IntN(10); {
		case c < 3:
			ids = append(ids, int32(r.IntN(tok.VocabSize())))
		case c < 5:
			ids = append(ids, byte0+int32(r.IntN(256)))
		case c < 7:
			s := []string{"é", "日", "😀", "\u3000", "\n"}[r.IntN(5)]
			for i := range r.IntN(len(s)) + 1 {
				ids = append(ids, byte0+int32(s[i]))
			}
		case c < 8:
			ids = append(ids, int32(r.IntN(3)))
		default:
			ids = append(ids, ws)
		}
	}
	return ids
}

// checkStream feeds ids to a StreamDecoder and checks its invariant.
func checkStream(t *testing.T, tok *Tokenizer, s *StreamDecoder, ids []int32) {
	t.Helper()
	var got strings.Builder
	for i, id := range ids {
		d := s.Push(id)
		if !utf8.ValidString(d) {
			t.Fatalf("Push(%d) delta %q is not valid UTF-8", id, d)
		}
		got.WriteString(d)
		if want := Strip(tok.Decode(ids[:i+1])); !strings.HasPrefix(want, got.String()) {
			t.Fatalf("after %v: emitted %q is not a prefix of %q", ids[:i+1], got.String(), want)
		}
	}
	got.WriteString(s.Flush())
	if want := Strip(tok.Decode(ids)); got.String() != want {
		t.Fatalf("stream of %v = %q, want %q", ids, got.String(), want)
	}
}

func TestStreamDecoderRandom(t *testing.T) {
	tok := loadPreset(t, "tiny.model")
	r := rand.New(rand.NewPCG(1, 2))
	s := tok.NewStreamDecoder()
	for range 500 {
		checkStream(t, tok, s, randomIDs(r, tok, 1+r.IntN(40)))
	}
}

func TestStreamDecoderText(t *testing.T) {
	tok := loadPreset(t, "tiny.model")
	s := tok.NewStreamDecoder()
	text := "  person <box>[[1, 2, 3, 4]]</box>, 日本 😀 tree  \n"
	ids := tok.Encode(text, false)
	var deltas []string
	for _, id := range ids {
		if d := s.Push(id); d != "" {
			deltas = append(deltas, d)
		}
	}
	if f := s.Flush(); f != "" {
		deltas = append(deltas, f)
	}
	if got := strings.Join(deltas, ""); got != Strip(text) {
		t.Errorf("stream = %q, want %q", got, Strip(text))
	}
	if strings.HasPrefix(deltas[0], " ") || strings.Contains(strings.Join(deltas, ""), "▁") {
		t.Errorf("deltas %q hold a stray space", deltas)
	}
	for _, d := range deltas {
		if strings.ContainsRune(d, utf8.RuneError) {
			t.Errorf("delta %q holds U+FFFD from a split character", d)
		}
	}
}

func TestStripMatchesPython(t *testing.T) {
	// The separators U+001C..U+001F are whitespace to Python but not to Go's
	// unicode.IsSpace; U+200B and U+FEFF are whitespace to neither.
	if got := Strip("\x1c\u3000\u00a0 a\u200b \t\x1f"); got != "a\u200b" {
		t.Errorf("Strip = %q", got)
	}
}

// roundTrip is what LLaMA's decode(encode(s)) gives for valid UTF-8 s
// without special-token texts: s with every "▁" read as a space, less one
// leading space (decode drops the dummy "▁" and sentencepiece one more).
func roundTrip(s string) string { return strings.TrimPrefix(strings.ReplaceAll(s, "▁", " "), " ") }

func FuzzEncode(f *testing.F) {
	tok := loadPreset(f, "tiny.model")
	f.Add("Please localize all entities in this image.")
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s, true)
		if len(ids) == 0 || ids[0] != tok.BOS() {
			t.Fatalf("Encode(%q) = %v lacks BOS", s, ids)
		}
		for _, id := range ids {
			if id < 0 || int(id) >= tok.VocabSize() {
				t.Fatalf("Encode(%q) gave id %d", s, id)
			}
		}
		got := tok.Decode(ids)
		hasSpecial := strings.Contains(s, "<s>") || strings.Contains(s, "</s>") || strings.Contains(s, "<unk>")
		if utf8.ValidString(s) && !hasSpecial && got != roundTrip(s) {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidModel) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		ids := tok.Encode("a <s> b\n日本", true)
		_ = tok.Decode(append(ids, 0, 1, 2, 3, 4, 5))
	})
}

func FuzzStreamDecoder(f *testing.F) {
	tok := loadPreset(f, "tiny.model")
	f.Add([]byte{0xE6, 0x97, 0xA5, ' ', 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		ids := make([]int32, 0, len(data)/2)
		for i := 0; i+1 < len(data); i += 2 {
			ids = append(ids, int32(data[i])<<8|int32(data[i+1]))
		}
		checkStream(t, tok, tok.NewStreamDecoder(), ids)
	})
}

func BenchmarkEncode(b *testing.B) {
	for _, name := range []string{"tiny.model", "bench.model"} {
		tok := loadPreset(b, name)
		r := rand.New(rand.NewPCG(3, 4))
		var boxes []string
		for range 40 {
			boxes = append(boxes, "person <box>[["+strings.Repeat("1", r.IntN(3)+1)+", 20, 300, 999]]</box>")
		}
		prompt := "A chat between a curious user and an artificial intelligence assistant. USER: \n" +
			"Please specify missing entities and their locations for this image based on these specified entities: " +
			strings.Join(boxes, ", ") + " ASSISTANT:"
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(prompt)))
			for b.Loop() {
				tok.Encode(prompt, true)
			}
		})
	}
}
