package membw

import (
	"math"
	"testing"
	"time"
)

// TestRead checks that a probe reports a finite, positive rate (timing
// thresholds do not belong in tests).
func TestRead(t *testing.T) {
	bw := NewProbe(8 << 20).Read(time.Millisecond)
	if !(bw > 0) || math.IsInf(bw, 0) {
		t.Fatalf("read bandwidth %g bytes/s", bw)
	}
}
