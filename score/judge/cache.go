package judge

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Cache is a content-addressed store of judge replies and embeddings on
// disk: the value of key k lives in Dir/k[:2]/k.json, written whole or not
// at all (a temporary file renamed into place), so a run that stops half
// way leaves every finished request reusable.
type Cache struct {
	Dir string
}

// DefaultCacheDir is pancap/score under the user's cache directory
// ($XDG_CACHE_HOME or ~/.cache on Linux).
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "pancap", "score"), nil
}

// Key hashes the parts of a request into a cache key: the SHA-256, in
// hex, of each part's length in bytes, a colon and the part, one after the
// other (so no two lists of parts share a key).
func Key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (c *Cache) path(key string) string {
	return filepath.Join(c.Dir, key[:2], key+".json")
}

// Get returns the stored value of key; ok is false when there is none.
func (c *Cache) Get(key string) (data []byte, ok bool, err error) {
	if c == nil {
		return nil, false, nil
	}
	data, err = os.ReadFile(c.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("judge: cache: %w", err)
	}
	return data, true, nil
}

// Put stores data under key.
func (c *Cache) Put(key string, data []byte) error {
	if c == nil {
		return nil
	}
	p := c.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("judge: cache: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("judge: cache: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("judge: cache: %w", err)
	}
	return nil
}
