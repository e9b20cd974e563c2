package cpu

import (
	"math"
	"testing"
)

func TestExpf(t *testing.T) {
	worst := 0.0
	for x := float32(-87); x < 88.7; x += 0.0137 {
		want := math.Exp(float64(x))
		got := float64(expf(x))
		rel := math.Abs(got-want) / want
		worst = max(worst, rel)
	}
	if worst > 3e-7 {
		t.Errorf("expf relative error %.3g > 3e-7", worst)
	}
	if expf(0) != 1 || expf(-200) != 0 || !math.IsInf(float64(expf(100)), 1) || !math.IsNaN(float64(expf(float32(math.NaN())))) {
		t.Error("expf special values")
	}
}
