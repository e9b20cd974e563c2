//go:build amd64 && cgo

package linalg

/*
#cgo CFLAGS: -O3
#include "act.h"
*/
import "C"

import "unsafe"

func cf(s []float32) *C.float { return (*C.float)(unsafe.Pointer(unsafe.SliceData(s))) }

func avx2SiLUMul(out, a, c []float32) { C.pc_silu_mul(cf(out), cf(a), cf(c), C.long(len(out))) }

func avx2QuickGELU(out, a []float32) { C.pc_quick_gelu(cf(out), cf(a), C.long(len(out))) }

func avx2ExpShift(out, a []float32, s float32) {
	C.pc_exp_shift(cf(out), cf(a), C.float(s), C.long(len(out)))
}
