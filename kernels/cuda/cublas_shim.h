// cublas_shim.h — the slice of the cuBLAS ABI the CUDA backend calls,
// declared here so that building needs no cuBLAS headers or libraries:
// libcublas is opened at run time with dlopen (see cublas.go). The values
// are those of cuBLAS 11, 12 and 13; tools/cuda/cublas-abi-check.c checks
// them against the real headers.
#ifndef PANCAP_CUBLAS_SHIM_H
#define PANCAP_CUBLAS_SHIM_H

#include <stdint.h>

#define PCB_STATUS_SUCCESS 0
#define PCB_OP_N 0
#define PCB_OP_T 1
#define PCB_R_32F 0   /* cudaDataType CUDA_R_32F */
#define PCB_R_16F 2   /* CUDA_R_16F */
#define PCB_R_16BF 14 /* CUDA_R_16BF */
#define PCB_COMPUTE_32F 68 /* cublasComputeType_t CUBLAS_COMPUTE_32F */
#define PCB_GEMM_DEFAULT (-1) /* cublasGemmAlgo_t CUBLAS_GEMM_DEFAULT */
#define PCB_DEFAULT_MATH 0    /* cublasMath_t CUBLAS_DEFAULT_MATH */

typedef void *pcb_handle;

typedef int (*pcb_create_fn)(pcb_handle *);
typedef int (*pcb_destroy_fn)(pcb_handle);
typedef int (*pcb_get_version_fn)(pcb_handle, int *);
typedef int (*pcb_set_stream_fn)(pcb_handle, void *);
typedef int (*pcb_set_math_mode_fn)(pcb_handle, int);
typedef int (*pcb_gemm_ex_fn)(pcb_handle, int transa, int transb, int m, int n, int k,
                              const void *alpha, const void *A, int Atype, int lda,
                              const void *B, int Btype, int ldb, const void *beta, void *C,
                              int Ctype, int ldc, int computeType, int algo);
typedef int (*pcb_gemm_strided_batched_ex_fn)(
    pcb_handle, int transa, int transb, int m, int n, int k, const void *alpha, const void *A,
    int Atype, int lda, long long strideA, const void *B, int Btype, int ldb, long long strideB,
    const void *beta, void *C, int Ctype, int ldc, long long strideC, int batchCount,
    int computeType, int algo);

#endif
