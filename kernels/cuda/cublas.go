//go:build cuda

package cuda

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include "cublas_shim.h"

// The library's entry points, filled by pcb_open.
static void *pcb_lib;
static pcb_create_fn pcb_create_p;
static pcb_destroy_fn pcb_destroy_p;
static pcb_get_version_fn pcb_get_version_p;
static pcb_set_stream_fn pcb_set_stream_p;
static pcb_set_math_mode_fn pcb_set_math_mode_p;
static pcb_gemm_ex_fn pcb_gemm_ex_p;
static pcb_gemm_strided_batched_ex_fn pcb_gemm_sb_ex_p;

// pcb_open loads path and resolves every entry point: 0 on success, -1 when
// dlopen fails, or the 1-based index of the first missing symbol.
static int pcb_open(const char *path) {
	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!lib) return -1;
	const char *names[] = {"cublasCreate_v2", "cublasDestroy_v2", "cublasGetVersion_v2",
	                       "cublasSetStream_v2", "cublasSetMathMode", "cublasGemmEx",
	                       "cublasGemmStridedBatchedEx"};
	void *syms[7];
	for (int i = 0; i < 7; i++) {
		syms[i] = dlsym(lib, names[i]);
		if (!syms[i]) {
			dlclose(lib);
			return i + 1;
		}
	}
	pcb_lib = lib;
	pcb_create_p = (pcb_create_fn)syms[0];
	pcb_destroy_p = (pcb_destroy_fn)syms[1];
	pcb_get_version_p = (pcb_get_version_fn)syms[2];
	pcb_set_stream_p = (pcb_set_stream_fn)syms[3];
	pcb_set_math_mode_p = (pcb_set_math_mode_fn)syms[4];
	pcb_gemm_ex_p = (pcb_gemm_ex_fn)syms[5];
	pcb_gemm_sb_ex_p = (pcb_gemm_strided_batched_ex_fn)syms[6];
	return 0;
}

static const char *pcb_dlerror(void) {
	const char *e = dlerror();
	return e ? e : "unknown dlopen error";
}

static int pcb_create(uintptr_t *h) {
	pcb_handle p = 0;
	int st = pcb_create_p(&p);
	*h = (uintptr_t)p;
	return st;
}
static int pcb_destroy(uintptr_t h) { return pcb_destroy_p((pcb_handle)h); }
static int pcb_version(uintptr_t h, int *v) { return pcb_get_version_p((pcb_handle)h, v); }
static int pcb_set_stream(uintptr_t h, uintptr_t s) { return pcb_set_stream_p((pcb_handle)h, (void *)s); }
static int pcb_set_math_mode(uintptr_t h, int mode) { return pcb_set_math_mode_p((pcb_handle)h, mode); }

// pcb_gemm_tn: C[n × m, column-major] = alpha · Aᵀ · B + beta · C with A
// [k × n] and B [k × m] column-major, i.e. row-major out[m × n] =
// x[m × k] · w[n × k]ᵀ with A = w and B = x.
static int pcb_gemm_tn(uintptr_t h, int n, int m, int k, float alpha, uintptr_t a, int at,
                       uintptr_t b, int bt, float beta, uintptr_t c) {
	return pcb_gemm_ex_p((pcb_handle)h, PCB_OP_T, PCB_OP_N, n, m, k, &alpha, (const void *)a, at,
	                     k, (const void *)b, bt, k, &beta, (void *)c, PCB_R_32F, n,
	                     PCB_COMPUTE_32F, PCB_GEMM_DEFAULT);
}

// pcb_gemm_sb: the strided-batched general form, float32 in and out.
static int pcb_gemm_sb(uintptr_t h, int ta, int tb, int m, int n, int k, float alpha,
                       uintptr_t a, int lda, long long sa, uintptr_t b, int ldb, long long sb,
                       float beta, uintptr_t c, int ldc, long long sc, int count) {
	return pcb_gemm_sb_ex_p((pcb_handle)h, ta, tb, m, n, k, &alpha, (const void *)a, PCB_R_32F,
	                        lda, sa, (const void *)b, PCB_R_32F, ldb, sb, &beta, (void *)c,
	                        PCB_R_32F, ldc, sc, count, PCB_COMPUTE_32F, PCB_GEMM_DEFAULT);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/pancap-serve/pancap/kernels"
)

// CuBLASEnv names the environment variable that, when set, is the only
// cuBLAS library tried (a soname or a path).
const CuBLASEnv = "PANCAP_CUBLAS"

// cublasSonames are tried in order when CuBLASEnv is unset: the CUDA 13, 12
// and 11 libraries.
var cublasSonames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}

// ErrNoCuBLAS reports that no cuBLAS library could be loaded.
var ErrNoCuBLAS = errors.New("cuda: no usable cuBLAS library")

// ErrCuBLAS reports a failed cuBLAS call.
var ErrCuBLAS = errors.New("cuda: cuBLAS call failed")

var (
	cublasOnce sync.Once
	cublasLib  string // the library that was loaded
	cublasErr  error
)

// loadCuBLAS opens the cuBLAS library once per process.
func loadCuBLAS() (string, error) {
	cublasOnce.Do(func() {
		names := cublasSonames
		if v := os.Getenv(CuBLASEnv); v != "" {
			names = []string{v}
		}
		cublasLib, cublasErr = openCuBLAS(names)
	})
	return cublasLib, cublasErr
}

// openCuBLAS loads the first of names that opens and has every entry point
// the backend calls.
func openCuBLAS(names []string) (string, error) {
	var tried []string
	for _, name := range names {
		cs := C.CString(name)
		rc := C.pcb_open(cs)
		C.free(unsafe.Pointer(cs))
		switch {
		case rc == 0:
			return name, nil
		case rc < 0:
			tried = append(tried, fmt.Sprintf("%s (%s)", name, C.GoString(C.pcb_dlerror())))
		default:
			tried = append(tried, fmt.Sprintf("%s (missing symbol #%d)", name, int(rc)))
		}
	}
	return "", fmt.Errorf("%w: tried %s; install the CUDA runtime's cuBLAS or set %s",
		ErrNoCuBLAS, strings.Join(tried, ", "), CuBLASEnv)
}

// cublas is one cuBLAS handle bound to the backend's context and stream.
type cublas struct {
	h       C.uintptr_t
	lib     string
	version int
}

func blasCheck(op string, st C.int) error {
	if st != C.PCB_STATUS_SUCCESS {
		return fmt.Errorf("%w: %s: status %d", ErrCuBLAS, op, int(st))
	}
	return nil
}

// newCuBLAS loads the library and creates a handle on the current context
// that issues its work on stream s.
func newCuBLAS(s cu.Stream) (*cublas, error) {
	lib, err := loadCuBLAS()
	if err != nil {
		return nil, err
	}
	b := &cublas{lib: lib}
	if err := blasCheck("cublasCreate", C.pcb_create(&b.h)); err != nil {
		return nil, err
	}
	var v C.int
	err = errors.Join(
		blasCheck("cublasGetVersion", C.pcb_version(b.h, &v)),
		blasCheck("cublasSetStream", C.pcb_set_stream(b.h, C.uintptr_t(uintptr(unsafe.Pointer(s.C()))))),
		// Default math: tensor cores for bf16/fp16 inputs; fp32 inputs stay
		// fp32 (TF32 would need CUBLAS_COMPUTE_32F_FAST_TF32 or the TF32 math
		// mode, neither of which is used).
		blasCheck("cublasSetMathMode", C.pcb_set_math_mode(b.h, C.PCB_DEFAULT_MATH)),
	)
	if err != nil {
		C.pcb_destroy(b.h)
		return nil, err
	}
	b.version = int(v)
	return b, nil
}

func (b *cublas) close() { C.pcb_destroy(b.h) }

// cudaType maps a weight dtype to cuBLAS's cudaDataType.
func cudaType(dt kernels.DType) C.int {
	switch dt {
	case kernels.BF16:
		return C.PCB_R_16BF
	case kernels.F16:
		return C.PCB_R_16F
	}
	return C.PCB_R_32F
}

// gemm computes out[m × n] = x[m × k] · w[n × k]ᵀ + beta · out, with w and
// x both of dtype dt (float32 accumulation, float32 out).
func (b *cublas) gemm(out, x, w cu.DevicePtr, dt kernels.DType, m, n, k int, beta float32) error {
	t := cudaType(dt)
	return blasCheck("cublasGemmEx", C.pcb_gemm_tn(b.h, C.int(n), C.int(m), C.int(k), 1,
		C.uintptr_t(w), t, C.uintptr_t(x), t, C.float(beta), C.uintptr_t(out)))
}

// gemmBatched is cublasGemmStridedBatchedEx in float32 with column-major
// arguments as cuBLAS names them.
func (b *cublas) gemmBatched(transA, transB bool, m, n, k int, alpha float32,
	a cu.DevicePtr, lda int, strideA int64, bm cu.DevicePtr, ldb int, strideB int64,
	beta float32, c cu.DevicePtr, ldc int, strideC int64, count int) error {
	op := func(t bool) C.int {
		if t {
			return C.PCB_OP_T
		}
		return C.PCB_OP_N
	}
	return blasCheck("cublasGemmStridedBatchedEx", C.pcb_gemm_sb(b.h, op(transA), op(transB),
		C.int(m), C.int(n), C.int(k), C.float(alpha),
		C.uintptr_t(a), C.int(lda), C.longlong(strideA),
		C.uintptr_t(bm), C.int(ldb), C.longlong(strideB),
		C.float(beta), C.uintptr_t(c), C.int(ldc), C.longlong(strideC), C.int(count)))
}
