package batcher

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pancap-serve/pancap/engine"
	"github.com/pancap-serve/pancap/sample"
)

// Token ids of the fake tokenizer: byte b is id b+byteBase.
const (
	fakeBOS  int32 = 1
	fakeEOS  int32 = 2
	byteBase int32 = 3
)

// fakeTokenizer maps every byte to one token, like byte-fallback pieces.
type fakeTokenizer struct{}

func (fakeTokenizer) Encode(text string, bos bool) []int32 {
	var ids []int32
	if bos {
		ids = append(ids, fakeBOS)
	}
	for i := range len(text) {
		ids = append(ids, int32(text[i])+byteBase)
	}
	return ids
}

// Decode skips special ids and, like Hugging Face, shows invalid or
// incomplete UTF-8 as U+FFFD.
func (fakeTokenizer) Decode(ids []int32) string {
	var b []byte
	for _, id := range ids {
		if id >= byteBase {
			b = append(b, byte(id-byteBase))
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// kvEntry is what the fake stores per KV position.
type kvEntry struct {
	val uint64 // hash of the input: token id or image row
	tok int32
	pos int
	set bool
}

// fakeEngine is a deterministic scripted model. Forward writes an entry per
// position into the block the chunk's table names and computes the next
// token from the entries of ALL positions read back through the table, so a
// wrong block table, a wrongly shared prefix or a missing image row changes
// the output. Its output never depends on the other chunks of a batch.
type fakeEngine struct {
	spec engine.Spec

	mu sync.Mutex
	kv [][]kvEntry // [blocks][block size]

	encodeCalls   atomic.Int64
	imagesEncoded atomic.Int64
	forwards      atomic.Int64
	panicAt       atomic.Int64 // panic in this Forward call (1-based); 0: never
	delay         time.Duration
	// script, when set, answers a prompt containing a key with its value
	// (then EOS) instead of hashed tokens.
	script map[string]string
	// gate, when set, holds every Preprocess until it is closed (or the
	// call's context ends); decoding counts the calls inside Preprocess.
	gate     chan struct{}
	decoding atomic.Int64
	decodes  atomic.Int64
}

func newFakeEngine(blocks int) *fakeEngine {
	spec := engine.Spec{
		Name: "fake", Hidden: 4, VocabSize: 259, ImageTokens: 6, ImageSize: 2, MaxContext: 1024,
		BOS: fakeBOS, EOS: fakeEOS, KVBlockSize: 4, KVBlocks: blocks, DType: "float32", Device: "cpu",
	}
	e := &fakeEngine{spec: spec, kv: make([][]kvEntry, blocks)}
	for i := range e.kv {
		e.kv[i] = make([]kvEntry, spec.KVBlockSize)
	}
	return e
}

func (e *fakeEngine) Spec() engine.Spec           { return e.spec }
func (e *fakeEngine) Tokenizer() engine.Tokenizer { return fakeTokenizer{} }

// fakeImageCost is the decode cost ImageCost reports per encoded byte.
const fakeImageCost = 1000

// ImageCost refuses bytes starting with "bad", else costs fakeImageCost a
// byte.
func (e *fakeEngine) ImageCost(data []byte) (int64, error) {
	if strings.HasPrefix(string(data), "bad") {
		return 0, errors.New("unsupported format")
	}
	return fakeImageCost * int64(len(data)), nil
}

// Preprocess refuses bytes starting with "bad"; pixels hash the bytes.
func (e *fakeEngine) Preprocess(ctx context.Context, data []byte) (engine.Image, error) {
	e.decodes.Add(1)
	e.decoding.Add(1)
	defer e.decoding.Add(-1)
	if e.gate != nil {
		select {
		case <-e.gate:
		case <-ctx.Done():
			return engine.Image{}, ctx.Err()
		}
	}
	if strings.HasPrefix(string(data), "bad") {
		return engine.Image{}, errors.New("unsupported format")
	}
	n := 3 * e.spec.ImageSize * e.spec.ImageSize
	img := engine.Image{Pixels: make([]float32, n), Width: 100, Height: 60}
	for i := range img.Pixels {
		img.Pixels[i] = float32(hashOf(data, uint64(i))%1000) / 1000
	}
	return img, nil
}

func (e *fakeEngine) EncodeImages(imgs []engine.Image) ([][]float32, error) {
	e.encodeCalls.Add(1)
	e.imagesEncoded.Add(int64(len(imgs)))
	out := make([][]float32, len(imgs))
	for i, img := range imgs {
		pix := make([]byte, 4*len(img.Pixels))
		for j, v := range img.Pixels {
			binary.LittleEndian.PutUint32(pix[4*j:], math.Float32bits(v))
		}
		f := make([]float32, e.spec.ImageTokens*e.spec.Hidden) // [ImageTokens × Hidden]
		for j := range f {
			f[j] = float32(hashOf(pix, uint64(j))%997) / 997
		}
		out[i] = f
	}
	return out, nil
}

func (e *fakeEngine) Forward(batch []engine.Chunk) (engine.Output, error) {
	if n := e.forwards.Add(1); n == e.panicAt.Load() {
		panic("fake engine: injected failure")
	}
	if e.delay > 0 {
		time.Sleep(e.delay)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	bs, h := e.spec.KVBlockSize, e.spec.Hidden
	var out engine.Output
	for _, c := range batch {
		if len(c.Blocks)*bs < c.Pos+len(c.Tokens) {
			return engine.Output{}, fmt.Errorf("block table of %d blocks too short for position %d", len(c.Blocks), c.Pos+len(c.Tokens))
		}
		row := 0
		for i, t := range c.Tokens {
			p := c.Pos + i
			v := hashOf(nil, uint64(uint32(t)))
			if t == engine.ImageToken {
				if (row+1)*h > len(c.Image) {
					return engine.Output{}, fmt.Errorf("image row %d missing at position %d", row, p)
				}
				buf := make([]byte, 4*h)
				for j, x := range c.Image[row*h : (row+1)*h] {
					binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(x))
				}
				v = hashOf(buf, 7)
				row++
			}
			e.kv[c.Blocks[p/bs]][p%bs] = kvEntry{val: v, tok: t, pos: p, set: true}
		}
		if row*h != len(c.Image) {
			return engine.Output{}, fmt.Errorf("chunk carries %d image rows, used %d", len(c.Image)/h, row)
		}
		for j := len(c.Tokens) - c.LogitRows(); j < len(c.Tokens); j++ {
			logits, err := e.next(c.Blocks, c.Pos+j+1)
			if err != nil {
				return engine.Output{}, err
			}
			if c.Greedy { // as an engine picking on its device
				out.Tokens = append(out.Tokens, sample.Argmax(logits))
			} else {
				out.Logits = append(out.Logits, logits)
			}
		}
	}
	return out, nil
}

// next reads positions [0, n) back through the block table and scores the
// next token: a hash of everything picks it, and a pending multi-byte UTF-8
// character is always completed so deltas have characters to split.
func (e *fakeEngine) next(blocks []int32, n int) ([]float32, error) {
	bs := e.spec.KVBlockSize
	hh := fnv.New64a()
	var buf [8]byte
	hist := make([]int32, 0, n)
	for p := range n {
		en := e.kv[blocks[p/bs]][p%bs]
		if !en.set || en.pos != p {
			return nil, fmt.Errorf("position %d reads block %d slot %d holding position %d (set %v)",
				p, blocks[p/bs], p%bs, en.pos, en.set)
		}
		binary.LittleEndian.PutUint64(buf[:], en.val)
		hh.Write(buf[:])
		hist = append(hist, en.tok)
	}
	x := hh.Sum64()
	var tok int32
	reply, scripted := e.scripted(hist)
	switch need := pendingUTF8(hist); {
	case scripted && reply == "":
		tok = fakeEOS
	case scripted:
		tok = byteBase + int32(reply[0])
	case need > 0:
		tok = byteBase + int32(0x80+x%64)
	case x%100 < 4:
		tok = fakeEOS
	case x%100 < 10:
		tok = byteBase + 0xC3 // 2-byte character follows
	case x%100 < 14:
		tok = byteBase + 0xE4 // 3-byte character follows
	case x%100 < 26:
		tok = byteBase + ' '
	case x%100 < 28:
		tok = byteBase + '\n'
	default:
		tok = byteBase + int32('a'+x/100%26)
	}
	logits := make([]float32, e.spec.VocabSize)
	logits[tok] = 1
	return logits, nil
}

// scripted returns what remains of the scripted reply to the prompt in hist.
func (e *fakeEngine) scripted(hist []int32) (string, bool) {
	if e.script == nil {
		return "", false
	}
	text := fakeTokenizer{}.Decode(hist)
	prompt, gen, ok := strings.Cut(text, " ASSISTANT:")
	if !ok {
		return "", false
	}
	for key, reply := range e.script {
		if strings.Contains(prompt, key) && strings.HasPrefix(reply, gen) {
			return reply[len(gen):], true
		}
	}
	return "", false
}

// pendingUTF8 returns how many continuation bytes the byte tokens at the end
// of hist still need.
func pendingUTF8(hist []int32) int {
	for back := 1; back <= 3 && back <= len(hist); back++ {
		t := hist[len(hist)-back] - byteBase
		switch {
		case t < 0:
			return 0
		case t&0xC0 == 0x80:
			continue
		case t&0xE0 == 0xC0:
			return max(0, 2-back)
		case t&0xF0 == 0xE0:
			return max(0, 3-back)
		default:
			return 0
		}
	}
	return 0
}

// hashOf is FNV-64a of data and a salt.
func hashOf(data []byte, salt uint64) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], salt)
	h.Write(b[:])
	h.Write(data)
	return h.Sum64()
}
