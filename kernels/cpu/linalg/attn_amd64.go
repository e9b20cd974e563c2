//go:build amd64 && cgo

package linalg

/*
#include "attn.h"
*/
import "C"

import "unsafe"

func avx2Attend(a Attn, scratch []float32) {
	causal := C.int(0)
	if a.Causal {
		causal = 1
	}
	k, v := unsafe.Pointer(unsafe.SliceData(a.K)), unsafe.Pointer(unsafe.SliceData(a.V))
	if a.KV16 != 0 {
		k, v = unsafe.Pointer(unsafe.SliceData(a.K16)), unsafe.Pointer(unsafe.SliceData(a.V16))
	}
	C.pc_attn(cf(a.Out), cf(a.Q), k, v, C.int(a.KV16), C.long(a.LD),
		(*C.int32_t)(unsafe.Pointer(unsafe.SliceData(a.Blocks))), C.long(a.BlockSize),
		C.long(a.Rows), C.long(a.Keys), causal, C.long(a.Heads), C.long(a.HeadDim),
		C.float(a.Scale), cf(scratch))
}

func avx2AttendScratch(heads, headDim, nmax int) int {
	return int(C.pc_attn_scratch(C.long(heads), C.long(headDim), C.long(nmax)))
}
