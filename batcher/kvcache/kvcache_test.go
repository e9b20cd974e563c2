package kvcache

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
)

// fill reserves and appends tokens to s.
func fill(t *testing.T, c *Cache, s *Seq, tokens []int32, share bool) {
	t.Helper()
	if err := c.Reserve(s, s.Tokens()+len(tokens)); err != nil {
		t.Fatal(err)
	}
	c.Append(s, tokens, share)
}

func seqTokens(n int, base int32) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = base + int32(i)
	}
	return out
}

func TestPrefixSharing(t *testing.T) {
	c := New(16, 4)
	img := ImageHash([]byte("image A"))
	prompt := seqTokens(10, 100) // 2 full blocks + 2 tokens
	a := c.NewSeq(img)
	if n := c.Match(a, prompt); n != 0 {
		t.Fatalf("empty cache matched %d tokens", n)
	}
	fill(t, c, a, prompt, true)
	if got := len(a.Blocks()); got != 3 {
		t.Fatalf("blocks = %d, want 3", got)
	}

	b := c.NewSeq(img)
	if n := c.Match(b, prompt); n != 8 {
		t.Fatalf("same image matched %d tokens, want 8", n)
	}
	if a.Blocks()[0] != b.Blocks()[0] || a.Blocks()[1] != b.Blocks()[1] {
		t.Fatalf("shared blocks differ: %v vs %v", a.Blocks(), b.Blocks())
	}
	fill(t, c, b, prompt[8:], true)
	if a.Blocks()[2] == b.Blocks()[2] {
		t.Fatal("partial block was shared")
	}

	// Same placeholder ids, different image bytes: no sharing.
	other := c.NewSeq(ImageHash([]byte("image B")))
	if n := c.Match(other, prompt); n != 0 {
		t.Fatalf("different image matched %d tokens", n)
	}
	// Divergence in the second block shares only the first.
	div := append(seqTokens(4, 100), seqTokens(6, 900)...)
	d := c.NewSeq(img)
	if n := c.Match(d, div); n != 4 {
		t.Fatalf("diverging prompt matched %d tokens, want 4", n)
	}
	st := c.Stats()
	if st.Used != 4 || st.Queries != 40 || st.Hits != 12 {
		t.Fatalf("stats %+v, want used 4, queries 40, hits 12", st)
	}
	for _, s := range []*Seq{a, b, other, d} {
		c.Free(s)
	}
	st = c.Stats()
	if st.Used != 0 || st.Free+st.Cached != 16 || st.Cached != 2 {
		t.Fatalf("after free: %+v, want 0 used and 2 cached", st)
	}
	// Unreferenced cached blocks still hit.
	e := c.NewSeq(img)
	if n := c.Match(e, prompt); n != 8 {
		t.Fatalf("cached prefix matched %d, want 8", n)
	}
	c.Free(e)
}

func TestMatchLeavesLastToken(t *testing.T) {
	c := New(8, 4)
	prompt := seqTokens(8, 1)
	a := c.NewSeq(Hash{})
	fill(t, c, a, prompt, true)
	b := c.NewSeq(Hash{})
	if n := c.Match(b, prompt); n != 4 {
		t.Fatalf("matched %d of an 8-token prompt, want 4 (the last token must run)", n)
	}
}

func TestEvictionLRU(t *testing.T) {
	c := New(4, 2)
	img := Hash{}
	// Two cached prefixes of 2 blocks each fill the pool.
	p1, p2 := seqTokens(5, 10), seqTokens(5, 50)
	for _, p := range [][]int32{p1, p2} {
		s := c.NewSeq(img)
		fill(t, c, s, p[:4], true)
		c.Free(s)
	}
	if st := c.Stats(); st.Cached != 4 || st.Free != 0 {
		t.Fatalf("stats %+v, want 4 cached", st)
	}
	// Touch p1 so p2 becomes least recently used.
	s := c.NewSeq(img)
	if n := c.Match(s, p1); n != 4 {
		t.Fatalf("p1 matched %d", n)
	}
	c.Free(s)
	// Allocating two blocks evicts p2.
	x := c.NewSeq(Hash{1})
	fill(t, c, x, seqTokens(4, 500), false)
	s1, s2 := c.NewSeq(img), c.NewSeq(img)
	if n := c.Match(s1, p1); n != 4 {
		t.Fatalf("p1 evicted: matched %d", n)
	}
	if n := c.Match(s2, p2); n != 0 {
		t.Fatalf("p2 survived: matched %d", n)
	}
	if err := c.Reserve(s2, 2); !errors.Is(err, ErrOutOfBlocks) {
		t.Fatalf("over-allocation: %v", err)
	}
	if len(s2.Blocks()) != 0 {
		t.Fatal("failed Reserve allocated blocks")
	}
	c.Free(x)
	c.Free(s1)
	c.Free(s2)
	if st := c.Stats(); st.Used != 0 || st.Free+st.Cached != 4 {
		t.Fatalf("leak: %+v", st)
	}
}

func TestReset(t *testing.T) {
	c := New(4, 2)
	s := c.NewSeq(Hash{})
	fill(t, c, s, seqTokens(5, 1), true)
	c.Reset()
	if st := c.Stats(); st.Free != 4 || st.Used != 0 || st.Cached != 0 {
		t.Fatalf("after reset: %+v", st)
	}
	if n := c.Match(c.NewSeq(Hash{}), seqTokens(5, 1)); n != 0 {
		t.Fatalf("reset cache matched %d", n)
	}
}

// check verifies the allocator's invariants against the sequences alive.
func check(t *testing.T, c *Cache, live []*Seq) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	refs := make([]int32, len(c.blocks))
	for _, s := range live {
		for _, id := range s.blocks {
			refs[id]++
		}
	}
	inFree := make([]bool, len(c.blocks))
	for _, id := range c.free {
		if inFree[id] {
			t.Fatalf("block %d twice on the free list", id)
		}
		inFree[id] = true
	}
	inLRU := make([]bool, len(c.blocks))
	n := 0
	for id := c.lruHead; id >= 0; id = c.blocks[id].next {
		inLRU[id] = true
		n++
	}
	if n != c.nCached {
		t.Fatalf("LRU length %d, counter %d", n, c.nCached)
	}
	for id, b := range c.blocks {
		if b.ref != refs[id] {
			t.Fatalf("block %d: ref %d, held by %d sequences", id, b.ref, refs[id])
		}
		states := 0
		for _, in := range []bool{inFree[id], inLRU[id], b.ref > 0} {
			if in {
				states++
			}
		}
		if states != 1 {
			t.Fatalf("block %d is in %d states (free %v, lru %v, ref %d)", id, states, inFree[id], inLRU[id], b.ref)
		}
		if inLRU[id] && !b.cached {
			t.Fatalf("uncached block %d on the LRU list", id)
		}
	}
	for h, id := range c.byHash {
		if !c.blocks[id].cached || c.blocks[id].hash != h {
			t.Fatalf("hash index points at block %d which does not hold it", id)
		}
	}
}

func TestPropertyRandomOps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := New(24, 4)
	images := []Hash{{}, ImageHash([]byte("x")), ImageHash([]byte("y"))}
	// A few prompts over a small alphabet so prefixes repeat often.
	prompts := make([][]int32, 6)
	for i := range prompts {
		p := make([]int32, 3+rng.IntN(14))
		for j := range p {
			p[j] = int32(rng.IntN(3))
		}
		prompts[i] = p
	}
	type live struct {
		s      *Seq
		tokens []int32
	}
	var seqs []live
	for range 3000 {
		switch op := rng.IntN(10); {
		case op < 4: // new sequence: match then prefill
			p := prompts[rng.IntN(len(prompts))]
			s := c.NewSeq(images[rng.IntN(len(images))])
			n := c.Match(s, p)
			if n%c.BlockSize() != 0 || n > len(p)-1 {
				t.Fatalf("match %d of %d tokens", n, len(p))
			}
			if err := c.Reserve(s, len(p)); err != nil {
				c.Free(s)
				if c.Available() >= c.BlocksFor(len(p)) {
					t.Fatalf("reserve failed with %d blocks available: %v", c.Available(), err)
				}
				continue
			}
			c.Append(s, p[n:], true)
			seqs = append(seqs, live{s, p})
		case op < 7 && len(seqs) > 0: // decode a few tokens
			l := &seqs[rng.IntN(len(seqs))]
			k := 1 + rng.IntN(5)
			if c.Reserve(l.s, l.s.Tokens()+k) == nil {
				c.Append(l.s, seqTokens(k, int32(rng.IntN(3))), true)
			}
		case len(seqs) > 0: // finish one
			i := rng.IntN(len(seqs))
			c.Free(seqs[i].s)
			seqs = append(seqs[:i], seqs[i+1:]...)
		}
		ss := make([]*Seq, len(seqs))
		for i := range seqs {
			ss[i] = seqs[i].s
		}
		check(t, c, ss)
	}
	for _, l := range seqs {
		c.Free(l.s)
	}
	check(t, c, nil)
	if st := c.Stats(); st.Used != 0 || st.Free+st.Cached != st.Blocks || st.Hits == 0 {
		t.Fatalf("final stats %+v", st)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := New(64, 4)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			p := seqTokens(9, int32(g%2))
			for range 200 {
				s := c.NewSeq(Hash{})
				n := c.Match(s, p)
				if err := c.Reserve(s, len(p)); err != nil {
					t.Error(err)
					return
				}
				c.Append(s, p[n:], true)
				c.Free(s)
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Used != 0 || st.Hits == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkPrefixReuse measures one stage's bookkeeping on a 640-token
// prompt whose 600-token prefix is cached: lookup, reserve, append, free.
func BenchmarkPrefixReuse(b *testing.B) {
	c := New(1024, 16)
	img := ImageHash([]byte("bench"))
	prompt := seqTokens(640, 1)
	s := c.NewSeq(img)
	if err := c.Reserve(s, 600); err != nil {
		b.Fatal(err)
	}
	c.Append(s, prompt[:600], true)
	c.Free(s)
	for b.Loop() {
		s := c.NewSeq(img)
		n := c.Match(s, prompt)
		if err := c.Reserve(s, len(prompt)+128); err != nil {
			b.Fatal(err)
		}
		c.Append(s, prompt[n:], true)
		c.Free(s)
	}
}

// TestTrim: blocks reserved past the recorded positions (rejected draft
// rows) go back to the free list; recorded and shared blocks stay.
func TestTrim(t *testing.T) {
	c := New(8, 4)
	s := c.NewSeq(Hash{})
	fill(t, c, s, seqTokens(5, 1), true) // one full block + 1 token
	if err := c.Reserve(s, 5+9); err != nil {
		t.Fatal(err)
	}
	if got := c.Stats().Used; got != 4 {
		t.Fatalf("%d blocks used after reserving 14 positions, want 4", got)
	}
	c.Append(s, seqTokens(2, 50), true) // 2 of 9 drafted positions accepted
	c.Trim(s)
	if got, st := len(s.Blocks()), c.Stats(); got != 2 || st.Used != 2 || st.Free != 6 {
		t.Fatalf("after Trim: %d blocks in the table, stats %+v; want 2 used, 6 free", got, st)
	}
	c.Trim(s) // nothing more to release
	fill(t, c, s, seqTokens(3, 60), true)
	if got := s.Tokens(); got != 10 {
		t.Errorf("%d positions recorded, want 10", got)
	}
	c.Free(s)
	if st := c.Stats(); st.Used != 0 || st.Free+st.Cached != 8 {
		t.Errorf("after Free: %+v", st)
	}
}

// TestShared counts the matching blocks that sequences hold, not the
// unreferenced cached ones, and changes nothing.
func TestShared(t *testing.T) {
	c := New(16, 4)
	img := ImageHash([]byte("image A"))
	prompt := seqTokens(10, 100) // 2 full blocks + 2 tokens
	a := c.NewSeq(img)
	fill(t, c, a, prompt, true)
	if n := c.Shared(img, prompt); n != 2 {
		t.Fatalf("Shared = %d with a holding the prefix, want 2", n)
	}
	if n := c.Shared(ImageHash([]byte("image B")), prompt); n != 0 {
		t.Fatalf("Shared = %d for another image, want 0", n)
	}
	if n := c.Shared(img, prompt[:8]); n != 1 {
		t.Fatalf("Shared = %d for an 8-token prompt, want 1 (the last token must run)", n)
	}
	c.Free(a)
	before := c.Stats()
	if n := c.Shared(img, prompt); n != 0 {
		t.Fatalf("Shared = %d with the prefix cached but unreferenced, want 0", n)
	}
	if after := c.Stats(); after != before {
		t.Fatalf("Shared changed the stats: %+v → %+v", before, after)
	}
}
