// Package kvcache is the paged KV-cache block allocator: a pool of fixed-size
// blocks, per-sequence block tables, reference counts and a prefix cache. It
// holds no tensors: the engine owns the memory and addresses it by the block
// ids handed out here.
//
// A full block is keyed by a hash chain over (image content hash, the block's
// token ids, the parent block's hash), so two sequences share a block only if
// everything before and inside it is the same, image bytes included — never by
// image placeholder ids alone. Blocks whose last reference is dropped stay in
// the prefix cache and are evicted least recently used when the pool runs short.
package kvcache

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// ErrOutOfBlocks means the pool has not enough free or evictable blocks.
var ErrOutOfBlocks = errors.New("kv cache: out of blocks")

// Hash identifies an image's content or a full block's contents and history.
type Hash [32]byte

// ImageHash hashes the bytes of an encoded image.
func ImageHash(data []byte) Hash { return sha256.Sum256(data) }

// blockHash is the hash chain link: H(parent ‖ image ‖ tokens).
func blockHash(parent, image Hash, tokens []int32) Hash {
	h := sha256.New()
	h.Write(parent[:])
	h.Write(image[:])
	var b [4]byte
	for _, t := range tokens {
		binary.LittleEndian.PutUint32(b[:], uint32(t))
		h.Write(b[:])
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// Stats are the allocator's counters.
type Stats struct {
	Blocks  int   // pool size
	Free    int   // blocks holding nothing
	Used    int   // blocks referenced by at least one sequence
	Cached  int   // unreferenced blocks kept for the prefix cache (evictable)
	Queries int64 // prompt tokens looked up in the prefix cache
	Hits    int64 // of those, tokens found
}

// Seq is one sequence's block table and the hashing state of its last,
// partially filled block. A Seq is used by one goroutine at a time.
type Seq struct {
	bs      int // tokens per block
	image   Hash
	blocks  []int32 // block table: block i holds positions [i·B, (i+1)·B)
	full    int     // leading blocks whose hash is known (committed or matched)
	parent  Hash    // hash of block full-1 (zero when full == 0)
	pending []int32 // tokens written after the last full block
}

// Blocks returns the block table. The slice is owned by the Seq.
func (s *Seq) Blocks() []int32 { return s.blocks }

// Tokens returns the number of positions whose KV has been recorded.
func (s *Seq) Tokens() int { return s.full*s.bs + len(s.pending) }

// block is the bookkeeping of one pool block.
type block struct {
	ref        int32
	hash       Hash
	cached     bool  // hash is registered in Cache.byHash
	prev, next int32 // LRU list links (-1: none), valid when ref == 0 && cached
}

// Cache is the block pool. It is safe for concurrent use.
type Cache struct {
	mu        sync.Mutex
	blockSize int
	blocks    []block
	free      []int32        // stack of blocks holding nothing
	byHash    map[Hash]int32 // prefix cache: full block hash → block
	lruHead   int32          // oldest evictable block, -1 when none
	lruTail   int32          // newest evictable block, -1 when none
	nCached   int            // length of the LRU list
	queries   int64
	hits      int64
}

// New returns a pool of n blocks of blockSize tokens each.
func New(n, blockSize int) *Cache {
	if n <= 0 || blockSize <= 0 {
		panic(fmt.Sprintf("kvcache: bad geometry %d blocks × %d tokens", n, blockSize))
	}
	c := &Cache{
		blockSize: blockSize,
		blocks:    make([]block, n),
		free:      make([]int32, n),
		byHash:    make(map[Hash]int32),
		lruHead:   -1,
		lruTail:   -1,
	}
	for i := range c.free {
		// Pop order 0, 1, 2, … makes block ids predictable in tests.
		c.free[i] = int32(n - 1 - i)
	}
	return c
}

// BlockSize returns the number of tokens per block.
func (c *Cache) BlockSize() int { return c.blockSize }

// NumBlocks returns the pool size.
func (c *Cache) NumBlocks() int { return len(c.blocks) }

// BlocksFor returns how many blocks hold n positions.
func (c *Cache) BlocksFor(n int) int { return (n + c.blockSize - 1) / c.blockSize }

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{
		Blocks:  len(c.blocks),
		Free:    len(c.free),
		Used:    len(c.blocks) - len(c.free) - c.nCached,
		Cached:  c.nCached,
		Queries: c.queries,
		Hits:    c.hits,
	}
}

// Available returns the blocks an allocation may take: free plus evictable.
func (c *Cache) Available() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.free) + c.nCached
}

// NewSeq returns an empty block table for a sequence over the image with the
// given content hash (the zero Hash for text-only sequences).
func (c *Cache) NewSeq(image Hash) *Seq { return &Seq{bs: c.blockSize, image: image} }

// Match looks up the longest run of cached full blocks that prefixes tokens
// and appends them to the empty sequence s, taking a reference on each. It
// matches at most len(tokens)-1 tokens, since the last prompt token must run
// through the model to give logits. It returns the number of matched tokens
// and counts the lookup in the Queries/Hits counters (in tokens).
func (c *Cache) Match(s *Seq, tokens []int32) int {
	if len(s.blocks) != 0 || len(s.pending) != 0 {
		panic("kvcache: Match on a non-empty sequence")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queries += int64(len(tokens))
	c.walk(s.image, tokens, func(id int32, h Hash) {
		c.acquire(id)
		s.blocks = append(s.blocks, id)
		s.full++
		s.parent = h
	})
	n := s.full * c.blockSize
	c.hits += int64(n)
	return n
}

// Shared returns how many blocks of the run Match would find for tokens
// over image are referenced by a sequence: the blocks a new sequence with
// this prompt would share without taking them from the pool. It changes
// nothing and counts no lookup.
func (c *Cache) Shared(image Hash, tokens []int32) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	c.walk(image, tokens, func(id int32, _ Hash) {
		if c.blocks[id].ref > 0 {
			n++
		}
	})
	return n
}

// walk calls f, in order, with each block of the longest run of cached
// full blocks that prefixes tokens (at most len(tokens)-1 of them, see
// Match) and its hash. c.mu is held.
func (c *Cache) walk(image Hash, tokens []int32, f func(id int32, h Hash)) {
	bs := c.blockSize
	var parent Hash
	for i := 0; (i+1)*bs <= len(tokens)-1; i++ {
		h := blockHash(parent, image, tokens[i*bs:(i+1)*bs])
		id, ok := c.byHash[h]
		if !ok {
			return
		}
		f(id, h)
		parent = h
	}
}

// acquire takes a reference on block id, unlinking it from the LRU list.
func (c *Cache) acquire(id int32) {
	b := &c.blocks[id]
	if b.ref == 0 && b.cached {
		c.lruUnlink(id)
	}
	b.ref++
}

// Reserve grows the block table of s to cover n positions. It either
// allocates every missing block or none and returns ErrOutOfBlocks.
func (c *Cache) Reserve(s *Seq, n int) error {
	need := c.BlocksFor(n) - len(s.blocks)
	if need <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if need > len(c.free)+c.nCached {
		return fmt.Errorf("%w: need %d, have %d free and %d evictable", ErrOutOfBlocks, need, len(c.free), c.nCached)
	}
	for range need {
		s.blocks = append(s.blocks, c.take())
	}
	return nil
}

// take returns a block with one reference: a free one, or else the least
// recently used cached one, which leaves the prefix cache.
func (c *Cache) take() int32 {
	var id int32
	if k := len(c.free); k > 0 {
		id = c.free[k-1]
		c.free = c.free[:k-1]
	} else {
		id = c.lruHead
		c.lruUnlink(id)
		delete(c.byHash, c.blocks[id].hash)
	}
	c.blocks[id] = block{ref: 1, prev: -1, next: -1}
	return id
}

// Append records that the KV of tokens was written at the next positions of
// s. Each block this fills gets its hash and, with share set, joins the prefix
// cache (unless an identical block is already there). The block table must
// already cover the positions (see Reserve).
func (c *Cache) Append(s *Seq, tokens []int32, share bool) {
	bs := c.blockSize
	if s.Tokens()+len(tokens) > len(s.blocks)*bs {
		panic(fmt.Sprintf("kvcache: append of %d tokens past the block table (%d positions, %d blocks)",
			len(tokens), s.Tokens(), len(s.blocks)))
	}
	for len(tokens) > 0 {
		k := min(bs-len(s.pending), len(tokens))
		s.pending = append(s.pending, tokens[:k]...)
		tokens = tokens[k:]
		if len(s.pending) < bs {
			break
		}
		h := blockHash(s.parent, s.image, s.pending)
		if share {
			c.mu.Lock()
			if _, dup := c.byHash[h]; !dup {
				id := s.blocks[s.full]
				c.blocks[id].hash = h
				c.blocks[id].cached = true
				c.byHash[h] = id
			}
			c.mu.Unlock()
		}
		s.parent = h
		s.full++
		s.pending = s.pending[:0]
	}
}

// Trim releases the blocks of s past those its recorded positions occupy:
// the rollback of blocks reserved for positions whose KV was written but
// not recorded (the rejected draft rows of a speculative verification).
// Those blocks hold no recorded position, so none of them is shared or in
// the prefix cache.
func (c *Cache) Trim(s *Seq) {
	keep := c.BlocksFor(s.Tokens())
	if len(s.blocks) <= keep {
		return
	}
	c.mu.Lock()
	for i := len(s.blocks) - 1; i >= keep; i-- {
		c.release(s.blocks[i])
	}
	c.mu.Unlock()
	s.blocks = s.blocks[:keep]
}

// Free drops the references of s, last block first (so the tail of a prefix
// is evicted before its head), and leaves s empty.
func (c *Cache) Free(s *Seq) {
	c.mu.Lock()
	for i := len(s.blocks) - 1; i >= 0; i-- {
		c.release(s.blocks[i])
	}
	c.mu.Unlock()
	*s = Seq{bs: s.bs, image: s.image}
}

// release drops one reference on id.
func (c *Cache) release(id int32) {
	b := &c.blocks[id]
	if b.ref <= 0 {
		panic(fmt.Sprintf("kvcache: release of unreferenced block %d", id))
	}
	b.ref--
	if b.ref > 0 {
		return
	}
	if b.cached {
		c.lruPush(id)
		return
	}
	c.free = append(c.free, id)
}

// Reset empties the pool and the prefix cache (after a failure that may have
// left the engine's KV memory inconsistent). Counters are kept.
func (c *Cache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.blocks)
	clear(c.blocks)
	c.free = c.free[:n]
	for i := range c.free {
		c.free[i] = int32(n - 1 - i)
	}
	clear(c.byHash)
	c.lruHead, c.lruTail, c.nCached = -1, -1, 0
}

// lruPush appends id as the newest evictable block.
func (c *Cache) lruPush(id int32) {
	b := &c.blocks[id]
	b.prev, b.next = c.lruTail, -1
	if c.lruTail >= 0 {
		c.blocks[c.lruTail].next = id
	} else {
		c.lruHead = id
	}
	c.lruTail = id
	c.nCached++
}

// lruUnlink removes id from the LRU list.
func (c *Cache) lruUnlink(id int32) {
	b := &c.blocks[id]
	if b.prev >= 0 {
		c.blocks[b.prev].next = b.next
	} else {
		c.lruHead = b.next
	}
	if b.next >= 0 {
		c.blocks[b.next].prev = b.prev
	} else {
		c.lruTail = b.prev
	}
	b.prev, b.next = -1, -1
	c.nCached--
}
