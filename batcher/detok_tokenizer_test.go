package batcher

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pancap-serve/pancap/tokenizer"
)

// benchTokenizer loads the project's 32000-piece LLaMA-style tokenizer.
func benchTokenizer(tb testing.TB) *tokenizer.Tokenizer {
	tb.Helper()
	tok, err := tokenizer.Load("../model/presets/tokenizers/bench.model")
	if err != nil {
		tb.Skip(err)
	}
	return tok
}

// TestDetokSentencePiece checks the incremental detokeniser against the real
// SentencePiece decoder on random ids rich in byte pieces, lone "▁" pieces
// and special tokens: deltas are valid UTF-8 and join to
// strip(Decode(ids)).
func TestDetokSentencePiece(t *testing.T) {
	tok := benchTokenizer(t)
	space := tok.Encode(" ", false) // "▁" pieces
	rng := rand.New(rand.NewPCG(1, 1))
	for trial := range 300 {
		ids := make([]int32, 1+rng.IntN(200))
		for i := range ids {
			switch r := rng.IntN(10); {
			case r < 3:
				ids[i] = int32(3 + rng.IntN(256)) // <0xNN> byte pieces
			case r < 4 && len(space) > 0:
				ids[i] = space[rng.IntN(len(space))]
			case r < 5:
				ids[i] = int32(rng.IntN(3)) // unk, bos, eos
			default:
				ids[i] = int32(rng.IntN(tok.VocabSize()))
			}
		}
		d := newDetok(tok, nil)
		var sb strings.Builder
		for _, id := range ids {
			delta, _ := d.push(id)
			if !utf8.ValidString(delta) {
				t.Fatalf("trial %d: invalid delta %q", trial, delta)
			}
			sb.WriteString(delta)
		}
		last, text := d.finish()
		sb.WriteString(last)
		if want := tokenizer.Strip(tok.Decode(ids)); sb.String() != want || text != want {
			t.Fatalf("trial %d: ids %v\njoined %q\ntext   %q\nwant   %q", trial, ids, sb.String(), text, want)
		}
	}
}

// BenchmarkDetok1024 streams a 1024-token stage.
func BenchmarkDetok1024(b *testing.B) {
	tok := benchTokenizer(b)
	ids := make([]int32, 1024)
	for i := range ids {
		ids[i] = int32(100 + i*7%30000)
	}
	for b.Loop() {
		d := newDetok(tok, nil)
		for _, id := range ids {
			d.push(id)
		}
		d.finish()
	}
}

// FuzzDetokSentencePiece: for any ids (two bytes each) the streamed deltas
// join to strip(Decode(ids)) under the real SentencePiece decoder.
func FuzzDetokSentencePiece(f *testing.F) {
	f.Add([]byte{0x00, 0x03, 0x74, 0x6f, 0x00, 0xe7, 0x00, 0x04})
	f.Add([]byte{0x74, 0x6f, 0x74, 0x6f, 0x00, 0x01})
	tok := benchTokenizer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ids := make([]int32, len(data)/2)
		for i := range ids {
			ids[i] = int32(int(data[2*i])<<8|int(data[2*i+1])) % int32(tok.VocabSize())
		}
		d := newDetok(tok, nil)
		var sb strings.Builder
		for _, id := range ids {
			delta, _ := d.push(id)
			sb.WriteString(delta)
		}
		last, _ := d.finish()
		sb.WriteString(last)
		if want := tokenizer.Strip(tok.Decode(ids)); sb.String() != want {
			t.Fatalf("ids %v: joined %q, want %q", ids, sb.String(), want)
		}
	})
}
