//go:build !linux

package weights

import "context"

// readResident is mapFile outside Linux, whose huge-page advice and page
// cache control it relies on (mapping is immediate: ctx is not needed).
func readResident(_ context.Context, path string) ([]byte, func() error, error) { return mapFile(path) }
