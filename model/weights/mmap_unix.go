//go:build unix

package weights

import (
	"fmt"
	"math"
	"os"
	"syscall"

	"github.com/pancap-serve/pancap/internal/safefile"
)

// mapFile maps the whole file at path read-only and shared. The returned
// release function unmaps it.
func mapFile(path string) ([]byte, func() error, error) {
	return loadFile(path, math.MaxInt, "mapped", func(f *os.File, size int) ([]byte, func() error, error) {
		data, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			return nil, nil, fmt.Errorf("weights: mmap %s: %w", path, err)
		}
		return data, func() error { return syscall.Munmap(data) }, nil
	})
}

// loadFile opens the regular file at path (a FIFO, device or directory is
// refused before it is opened: safefile.Open) and returns what load makes
// of it and its size (in bytes, at most limit, else ErrTooLarge saying it
// cannot be what); an empty file is an empty slice, load not called.
func loadFile(path string, limit int64, what string,
	load func(f *os.File, size int) ([]byte, func() error, error)) ([]byte, func() error, error) {
	f, err := safefile.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	if size > limit {
		return nil, nil, fmt.Errorf("%w: %s: %d bytes cannot be %s", ErrTooLarge, path, size, what)
	}
	return load(f, int(size))
}
