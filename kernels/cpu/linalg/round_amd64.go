//go:build amd64 && cgo

package linalg

/*
#cgo CFLAGS: -O3
#include "round.h"
*/
import "C"

import "unsafe"

func u16(s []uint16) *C.uint16_t { return (*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(s))) }

func avx2RoundF16(dst []uint16, src []float32) int {
	return int(C.pc_round_f16(u16(dst), cf(src), C.long(len(src))))
}

func avx2RoundBF16(dst []uint16, src []float32) int {
	return int(C.pc_round_bf16(u16(dst), cf(src), C.long(len(src))))
}
