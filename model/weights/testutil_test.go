package weights

import (
	"math"
	"unsafe"
)

// uintptrOf returns the address of the first byte of b.
func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }

func nan() float64 { return math.NaN() }
