//go:build openblas

package main

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

import (
	"unsafe"

	"github.com/pancap-serve/pancap/kernels/cpu/linalg"
)

// The OpenBLAS yardstick, linked only into this tool and only with the
// openblas build tag. It runs on as many threads as linalg's workers.
func init() {
	C.openblas_set_num_threads(C.int(linalg.Workers()))
	sgemm = func(out, x, w []float32, m, n, k int) {
		C.cblas_sgemm(C.CblasRowMajor, C.CblasNoTrans, C.CblasTrans, C.blasint(m), C.blasint(n), C.blasint(k),
			1, (*C.float)(unsafe.Pointer(&x[0])), C.blasint(k), (*C.float)(unsafe.Pointer(&w[0])), C.blasint(k),
			0, (*C.float)(unsafe.Pointer(&out[0])), C.blasint(n))
	}
}
