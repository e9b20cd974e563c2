package weights

import "fmt"

// DType is the element type of a stored tensor.
type DType uint8

// Element types, named as in safetensors headers.
const (
	F32 DType = iota + 1
	F16
	BF16
	F64
	I64
	I32
	I16
	I8
	U8
	Bool
)

var dtypeNames = [...]string{F32: "F32", F16: "F16", BF16: "BF16", F64: "F64", I64: "I64", I32: "I32", I16: "I16", I8: "I8", U8: "U8", Bool: "BOOL"}

var dtypeSizes = [...]int{F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, Bool: 1}

// torchNames are the names of the dtypes in PyTorch and in engine.Spec.
var torchNames = [...]string{F32: "float32", F16: "float16", BF16: "bfloat16", F64: "float64", I64: "int64", I32: "int32", I16: "int16", I8: "int8", U8: "uint8", Bool: "bool"}

// ParseDType parses a safetensors dtype name ("F32", "BF16", ...) or a
// PyTorch one ("float32", "bfloat16", "float16", ...).
func ParseDType(s string) (DType, error) {
	for d := F32; d <= Bool; d++ {
		if s == dtypeNames[d] || s == torchNames[d] {
			return d, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrDType, s)
}

// String returns the safetensors name of d.
func (d DType) String() string {
	if d.valid() {
		return dtypeNames[d]
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// TorchName returns PyTorch's name of d ("float32", "bfloat16", "float16").
func (d DType) TorchName() string {
	if d.valid() {
		return torchNames[d]
	}
	return d.String()
}

// Size returns the size of one element in bytes (0 for an invalid DType).
func (d DType) Size() int {
	if d.valid() {
		return dtypeSizes[d]
	}
	return 0
}

// IsFloat reports whether d is one of the weight dtypes F32, F16 and BF16.
func (d DType) IsFloat() bool { return d == F32 || d == F16 || d == BF16 }

func (d DType) valid() bool { return d >= F32 && d <= Bool }
