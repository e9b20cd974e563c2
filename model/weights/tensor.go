package weights

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/pancap-serve/pancap/kernels/dtype"
)

// Tensor is one named tensor of a checkpoint. Data holds the raw
// little-endian elements in row-major order; it is often a slice of a
// read-only memory mapping and must then not be written.
type Tensor struct {
	Name  string // name in the checkpoint, e.g. "model.layers.0.mlp.up_proj.weight"
	File  string // file it was read from, for messages
	DType DType
	Shape []int  // dimensions, outermost first; empty for a scalar
	Data  []byte // [Len() × DType.Size()] raw little-endian bytes
}

// nativeLE reports whether the host stores integers little-endian, so raw
// tensor bytes can be viewed in place.
var nativeLE = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// Len returns the number of elements, the product of Shape.
func (t *Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// where names the tensor and its file for messages.
func (t *Tensor) where() string {
	if t.File == "" {
		return t.Name
	}
	return t.File + ": " + t.Name
}

// Float32 returns the elements widened to float32 in a new slice. Only the
// weight dtypes F32, F16 and BF16 are accepted.
func (t *Tensor) Float32() ([]float32, error) {
	n := t.Len()
	out := make([]float32, n) // [n]
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = dtype.BF16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	case F16:
		for i := range out {
			out[i] = dtype.F16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	default:
		return nil, fmt.Errorf("%w: %s is %s, want F32, F16 or BF16", ErrDType, t.where(), t.DType)
	}
	return out, nil
}

// U16 returns the raw 16-bit elements of an F16 or BF16 tensor: a view of
// Data (not to be written) when it is 2-byte aligned, else a copy.
func (t *Tensor) U16() ([]uint16, error) {
	if t.DType != F16 && t.DType != BF16 {
		return nil, fmt.Errorf("%w: %s is %s, want F16 or BF16", ErrDType, t.where(), t.DType)
	}
	n := t.Len()
	if n == 0 {
		return []uint16{}, nil
	}
	if nativeLE && uintptr(unsafe.Pointer(&t.Data[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&t.Data[0])), n), nil
	}
	out := make([]uint16, n) // [n]
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(t.Data[2*i:])
	}
	return out, nil
}

// F32View returns the elements of an F32 tensor as a view of Data (not to be
// written), or false when the tensor is not F32 or Data is not 4-byte
// aligned; use Float32 then.
func (t *Tensor) F32View() ([]float32, bool) {
	n := t.Len()
	if t.DType != F32 || !nativeLE || n == 0 || uintptr(unsafe.Pointer(&t.Data[0]))%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&t.Data[0])), n), true
}

// Expect checks that the tensor has exactly the given shape.
func (t *Tensor) Expect(shape ...int) error {
	if !slices.Equal(t.Shape, shape) {
		return fmt.Errorf("%w: %s has shape %v, want %v", ErrShape, t.where(), t.Shape, shape)
	}
	return nil
}

// CheckFinite returns an error wrapping ErrNotFinite, naming the tensor, the
// number of NaN and infinite values and the first index, when t holds any.
// Non-float tensors are always finite.
func CheckFinite(t *Tensor) error {
	var nan, inf, first int
	note := func(i int, isNaN bool) {
		if nan+inf == 0 {
			first = i
		}
		if isNaN {
			nan++
		} else {
			inf++
		}
	}
	n := t.Len()
	switch t.DType {
	case F32:
		for i := 0; i < n; i++ {
			b := binary.LittleEndian.Uint32(t.Data[4*i:])
			if b&0x7f800000 == 0x7f800000 {
				note(i, b&0x7fffff != 0)
			}
		}
	case BF16, F16:
		expMask, manMask := uint16(0x7f80), uint16(0x7f)
		if t.DType == F16 {
			expMask, manMask = 0x7c00, 0x3ff
		}
		for i := 0; i < n; i++ {
			h := binary.LittleEndian.Uint16(t.Data[2*i:])
			if h&expMask == expMask {
				note(i, h&manMask != 0)
			}
		}
	case F64:
		for i := 0; i < n; i++ {
			f := math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
			if math.IsNaN(f) || math.IsInf(f, 0) {
				note(i, math.IsNaN(f))
			}
		}
	}
	if nan+inf > 0 {
		return fmt.Errorf("%w: %s has %d NaN and %d infinite values (first at flat index %d)", ErrNotFinite, t.where(), nan, inf, first)
	}
	return nil
}

// numel returns the product of shape and whether it is valid: every
// dimension non-negative and the product of elements and bytes per element
// free of overflow.
func numel(shape []int, elemSize int) (int, bool) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > math.MaxInt/elemSize/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// EncodeFloat32 stores src into dst as raw little-endian elements of dtype
// dt (F32, F16 or BF16, rounded to nearest even); dst must hold exactly
// len(src)·dt.Size() bytes.
func EncodeFloat32(dst []byte, dt DType, src []float32) error {
	if !dt.IsFloat() {
		return fmt.Errorf("%w: cannot encode float32 values as %s", ErrDType, dt)
	}
	if len(dst) != len(src)*dt.Size() {
		return fmt.Errorf("%w: %d bytes for %d %s values", ErrShape, len(dst), len(src), dt)
	}
	switch dt {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], dtype.F32ToBF16(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], dtype.F32ToF16(v))
		}
	}
	return nil
}

// FromFloat32 builds a tensor of dtype dt (F32, F16 or BF16) and the given
// shape from values in row-major order.
func FromFloat32(name string, dt DType, shape []int, values []float32) (*Tensor, error) {
	n, ok := numel(shape, max(dt.Size(), 1))
	if !ok || n != len(values) {
		return nil, fmt.Errorf("%w: %s: %d values for shape %v", ErrShape, name, len(values), shape)
	}
	t := &Tensor{Name: name, DType: dt, Shape: append([]int{}, shape...), Data: make([]byte, n*dt.Size())}
	if err := EncodeFloat32(t.Data, dt, values); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}
