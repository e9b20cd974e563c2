//go:build !unix

package weights

import "os"

// mapFile reads the whole file at path: this platform has no mmap.
func mapFile(path string) ([]byte, func() error, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return nil }, nil
}
