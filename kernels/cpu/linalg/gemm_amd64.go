//go:build amd64 && cgo

package linalg

/*
#cgo CFLAGS: -O3
#include "gemm.h"
*/
import "C"

import (
	"os"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The AVX2 kernels are compiled with per-function target attributes, so the
// binary runs on any x86-64; they are used only where the CPU has them.
// PANCAP_LINALG=go forces the portable kernel.
func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C && os.Getenv("PANCAP_LINALG") != "go" {
		fast = &avx2
	}
}

var avx2 = fastKernel{name: "avx2", gemm: avx2Gemm, scratchLen: avx2Scratch,
	attend: avx2Attend, attendScratch: avx2AttendScratch, siluMul: avx2SiLUMul, quickGELU: avx2QuickGELU,
	expShift: avx2ExpShift, roundF16: avx2RoundF16, roundBF16: avx2RoundBF16}

func avx2Gemm(wt wtype, g gemmShape, out, x *float32, w unsafe.Pointer, j0, j1 int, scratch []float32) {
	var s *C.float
	if len(scratch) > 0 {
		s = (*C.float)(unsafe.Pointer(unsafe.SliceData(scratch)))
	}
	C.pc_gemm(C.int(wt), (*C.float)(unsafe.Pointer(out)), C.long(g.ldo), (*C.float)(unsafe.Pointer(x)),
		C.long(g.ldx), w, C.long(g.ldw), C.long(g.m), C.long(g.k), C.long(j0), C.long(j1), s)
}

func avx2Scratch(k int) int { return int(C.pc_gemm_scratch(C.long(k))) }
