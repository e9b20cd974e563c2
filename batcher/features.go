package batcher

import "github.com/pancap-serve/pancap/batcher/kvcache"

// featureCache keeps the encoder output of the most recently used images,
// keyed by the content hash of their bytes, so a later request for the same
// image skips the vision encoder. Only the step loop uses it.
type featureCache struct {
	cap   int
	order []kvcache.Hash // least recently used first
	byKey map[kvcache.Hash][]float32
}

// newFeatureCache returns a cache of n images.
func newFeatureCache(n int) *featureCache {
	return &featureCache{cap: n, byKey: make(map[kvcache.Hash][]float32)}
}

// get returns the features of an image and marks them used.
func (c *featureCache) get(h kvcache.Hash) ([]float32, bool) {
	f, ok := c.byKey[h]
	if ok {
		c.touch(h)
	}
	return f, ok
}

// put stores features, evicting the least recently used beyond capacity.
func (c *featureCache) put(h kvcache.Hash, f []float32) {
	if _, ok := c.byKey[h]; ok {
		c.touch(h)
		return
	}
	c.byKey[h] = f
	c.order = append(c.order, h)
	if len(c.order) > c.cap {
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

// clear empties the cache.
func (c *featureCache) clear() {
	c.order = nil
	clear(c.byKey)
}
