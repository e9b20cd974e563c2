//go:build !linux

package weights

// readResident is mapFile outside Linux, whose huge-page advice and page
// cache control it relies on.
func readResident(path string) ([]byte, func() error, error) { return mapFile(path) }
