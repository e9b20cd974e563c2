package batcher

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
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

	mu     sync.Mutex
	picker sample.Picker  // the picks of Sample chunks
	kv     [][]kvEntry    // [blocks][block size]
	starts map[string]int // chunks at position 0, by their first 8 tokens: a sequence's (re)computations

	encodeCalls   atomic.Int64
	imagesEncoded atomic.Int64
	forwards      atomic.Int64
	maxBatch      atomic.Int64 // most chunks in one Forward
	panicAt       atomic.Int64 // panic in this Forward call (1-based); 0: never
	lostAt        atomic.Int64 // from this Forward call on (1-based), the device is lost; 0: never
	lostPanics    bool         // a lost device panics with its error instead of returning it
	delay         time.Duration
	// encodeSteps, when set, makes features ready only once this many
	// Forward calls have followed their encode (a GPU encoding on its own
	// stream) or Wait is called; liveFeatures counts the feature sets
	// encoded and not yet released, featureWaits the Wait calls.
	encodeSteps  int64
	liveFeatures atomic.Int64
	featureWaits atomic.Int64
	// pending are the features encoded and neither ready nor released at
	// the last Forward; pendingSteps counts the Forward calls made while
	// some were (steps that ran beside an encode).
	pending      []*fakeFeatures
	pendingSteps atomic.Int64
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
	return newFakeEngineSpec(engine.Spec{
		Name: "fake", Hidden: 4, VocabSize: 259, ImageTokens: 6, ImageSize: 2, MaxContext: 1024,
		BOS: fakeBOS, EOS: fakeEOS, KVBlockSize: 4, KVBlocks: blocks, DType: "float32", Device: "cpu",
	})
}

// newFakeEngineSpec returns a fake engine of the given geometry.
func newFakeEngineSpec(spec engine.Spec) *fakeEngine {
	e := &fakeEngine{spec: spec, kv: make([][]kvEntry, spec.KVBlocks), starts: map[string]int{}}
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

// fakeFeatures are the fake's image features: host rows, ready from the
// readyAt-th Forward call on.
type fakeFeatures struct {
	e        *fakeEngine
	rows     []float32 // [ImageTokens × Hidden]
	readyAt  int64
	released bool
}

func (f *fakeFeatures) Ready() bool { return f.e.forwards.Load() >= f.readyAt }

func (f *fakeFeatures) Wait() {
	f.e.featureWaits.Add(1)
	f.readyAt = 0
}

// Release panics when called twice, so a double release fails the test.
func (f *fakeFeatures) Release() {
	if f.released {
		panic("fake engine: features released twice")
	}
	f.released = true
	f.e.liveFeatures.Add(-1)
}

func (e *fakeEngine) EncodeImages(imgs []engine.Image) ([]engine.Features, error) {
	e.encodeCalls.Add(1)
	e.imagesEncoded.Add(int64(len(imgs)))
	out := make([]engine.Features, len(imgs))
	for i, img := range imgs {
		pix := make([]byte, 4*len(img.Pixels))
		for j, v := range img.Pixels {
			binary.LittleEndian.PutUint32(pix[4*j:], math.Float32bits(v))
		}
		f := make([]float32, e.spec.ImageTokens*e.spec.Hidden) // [ImageTokens × Hidden]
		for j := range f {
			f[j] = float32(hashOf(pix, uint64(j))%997) / 997
		}
		ff := &fakeFeatures{e: e, rows: f, readyAt: e.forwards.Load() + e.encodeSteps}
		out[i] = ff
		e.pending = append(e.pending, ff)
		e.liveFeatures.Add(1)
	}
	return out, nil
}

func (e *fakeEngine) Forward(batch []engine.Chunk) (engine.Output, error) {
	n := e.forwards.Add(1)
	if n == e.panicAt.Load() {
		panic("fake engine: injected failure")
	}
	if at := e.lostAt.Load(); at > 0 && n >= at {
		err := fmt.Errorf("%w: fake engine: injected illegal address", engine.ErrDeviceLost)
		if e.lostPanics {
			panic(err)
		}
		return engine.Output{}, err
	}
	for n := int64(len(batch)); ; {
		if m := e.maxBatch.Load(); n <= m || e.maxBatch.CompareAndSwap(m, n) {
			break
		}
	}
	if e.delay > 0 {
		time.Sleep(e.delay)
	}
	e.pending = slices.DeleteFunc(e.pending, func(f *fakeFeatures) bool { return f.released || f.Ready() })
	if len(e.pending) > 0 {
		e.pendingSteps.Add(1)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	bs, h := e.spec.KVBlockSize, e.spec.Hidden
	var out engine.Output
	for _, c := range batch {
		if len(c.Blocks)*bs < c.Pos+len(c.Tokens) {
			return engine.Output{}, fmt.Errorf("block table of %d blocks too short for position %d", len(c.Blocks), c.Pos+len(c.Tokens))
		}
		if c.Pos == 0 {
			e.starts[fmt.Sprint(c.Tokens[:min(8, len(c.Tokens))])]++
		}
		// Stricter than the contract: features must be ready and not
		// released when a chunk names them (the batcher schedules image
		// rows only once they are ready).
		var img []float32
		if c.Image != nil {
			f := c.Image.(*fakeFeatures)
			switch {
			case f.released:
				return engine.Output{}, errors.New("chunk names released features")
			case !f.Ready():
				return engine.Output{}, errors.New("chunk names features that are not ready")
			}
			img = f.rows[c.ImageRow*h:]
		}
		row := 0
		for i, t := range c.Tokens {
			p := c.Pos + i
			v := hashOf(nil, uint64(uint32(t)))
			if t == engine.ImageToken {
				if (row+1)*h > len(img) {
					return engine.Output{}, fmt.Errorf("image row %d missing at position %d", row, p)
				}
				buf := make([]byte, 4*h)
				for j, x := range img[row*h : (row+1)*h] {
					binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(x))
				}
				v = hashOf(buf, 7)
				row++
			}
			e.kv[c.Blocks[p/bs]][p%bs] = kvEntry{val: v, tok: t, pos: p, set: true}
		}
		if (row == 0) != (c.Image == nil) {
			return engine.Output{}, fmt.Errorf("chunk names features %v with %d image rows", c.Image != nil, row)
		}
		for j := len(c.Tokens) - c.LogitRows(); j < len(c.Tokens); j++ {
			logits, err := e.next(c.Blocks, c.Pos+j+1)
			if err != nil {
				return engine.Output{}, err
			}
			switch { // as an engine picking on its device
			case c.Greedy:
				out.Tokens = append(out.Tokens, sample.Argmax(logits))
			case c.Sample != nil:
				p := c.Sample
				out.Tokens = append(out.Tokens, e.picker.Pick(logits, sample.Params{Temperature: p.Temperature, TopK: p.TopK, TopP: p.TopP}, p.U))
			default:
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
