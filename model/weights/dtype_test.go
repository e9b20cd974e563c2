package weights

import (
	"errors"
	"testing"
)

func TestParseDType(t *testing.T) {
	for d := F32; d <= Bool; d++ {
		if g, err := ParseDType(d.String()); g != d || err != nil {
			t.Errorf("%s: %v %v", d, g, err)
		}
		if g, err := ParseDType(d.TorchName()); g != d || err != nil {
			t.Errorf("%s: %v %v", d.TorchName(), g, err)
		}
	}
	if _, err := ParseDType("F8_E4M3"); !errors.Is(err, ErrDType) {
		t.Error(err)
	}
	if DType(0).Size() != 0 || DType(99).String() != "DType(99)" {
		t.Error("invalid dtype")
	}
}
