package benchmarks

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves goroutines behind: every
// request of a run, stopped or not, must have returned.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
