package batcher

import (
	"time"

	"github.com/pancap-serve/pancap/batcher/kvcache"
	"github.com/pancap-serve/pancap/engine"
)

// features is one image's encoder output as the step loop holds it: the
// engine's handle and the references to it. Every request that may still
// feed the image's rows (until it ends: a preempted stage recomputes them,
// and in reuse mode later stages may miss the prefix cache) and the feature
// cache's entry hold one; the handle is released when the last goes, so
// exactly once.
type features struct {
	h     engine.Features
	refs  int
	start time.Time     // when the encode was queued
	ready bool          // h.Ready() has reported true
	took  time.Duration // from start to the first Ready seen
}

// retain adds a reference and returns f.
func (f *features) retain() *features {
	f.refs++
	return f
}

// release drops a reference, releasing the handle with the last.
func (f *features) release() {
	f.refs--
	switch {
	case f.refs == 0:
		f.h.Release()
	case f.refs < 0:
		panic("batcher: image features released more often than retained")
	}
}

// isReady polls the handle until it reports ready, and remembers that.
func (f *features) isReady() bool {
	if !f.ready && f.h.Ready() {
		f.ready, f.took = true, time.Since(f.start)
	}
	return f.ready
}

// featureCache keeps the encoder output of the most recently used images,
// keyed by the content hash of their bytes, so a later request for the same
// image skips the vision encoder. It holds a reference to each entry. Only
// the step loop uses it.
type featureCache struct {
	cap   int
	order []kvcache.Hash // least recently used first
	byKey map[kvcache.Hash]*features
}

// newFeatureCache returns a cache of n images.
func newFeatureCache(n int) *featureCache {
	return &featureCache{cap: n, byKey: make(map[kvcache.Hash]*features)}
}

// get returns the features of an image and marks them used.
func (c *featureCache) get(h kvcache.Hash) (*features, bool) {
	f, ok := c.byKey[h]
	if ok {
		c.touch(h)
	}
	return f, ok
}

// put stores features, evicting the least recently used beyond capacity.
func (c *featureCache) put(h kvcache.Hash, f *features) {
	if _, ok := c.byKey[h]; ok {
		c.touch(h)
		return
	}
	c.byKey[h] = f.retain()
	c.order = append(c.order, h)
	if len(c.order) > c.cap {
		c.byKey[c.order[0]].release()
		delete(c.byKey, c.order[0])
		c.order = c.order[1:]
	}
}

// touch moves h to the most recently used end.
func (c *featureCache) touch(h kvcache.Hash) {
	for i, k := range c.order {
		if k == h {
			c.order = append(append(c.order[:i:i], c.order[i+1:]...), h)
			return
		}
	}
}

// clear empties the cache, dropping its references.
func (c *featureCache) clear() {
	for _, f := range c.byKey {
		f.release()
	}
	c.order = nil
	clear(c.byKey)
}
