package weights

import (
	"fmt"
	"math"
)

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

// F32ToBF16 rounds f to bfloat16 to nearest, ties to even, as PyTorch does;
// NaN becomes the canonical quiet NaN.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return 0x7fc0
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F32ToF16 rounds f to IEEE half precision to nearest, ties to even,
// producing subnormals and infinities as PyTorch does.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	switch {
	case e >= 0x1f:
		return sign | 0x7c00
	case e < -10:
		return sign
	case e <= 0: // subnormal half
		man |= 0x800000
		shift := uint(14 - e)
		h := man >> shift
		rem := man & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent correctly rounds up to the next binade or infinity
	}
	return sign | uint16(h)
}
