// cublas-abi-check.c — compiled (never run) by check.sh against the CUDA
// headers: the constants and enum sizes that kernels/cuda/cublas_shim.h
// hard-codes must match cuBLAS's own.
#include <cublas_v2.h>

#include "cublas_shim.h"

_Static_assert(PCB_STATUS_SUCCESS == CUBLAS_STATUS_SUCCESS, "status");
_Static_assert(PCB_OP_N == CUBLAS_OP_N && PCB_OP_T == CUBLAS_OP_T, "operation");
_Static_assert(PCB_R_32F == CUDA_R_32F && PCB_R_16F == CUDA_R_16F && PCB_R_16BF == CUDA_R_16BF,
               "cudaDataType");
_Static_assert(PCB_COMPUTE_32F == CUBLAS_COMPUTE_32F, "cublasComputeType_t");
_Static_assert(PCB_GEMM_DEFAULT == CUBLAS_GEMM_DEFAULT, "cublasGemmAlgo_t");
_Static_assert(PCB_DEFAULT_MATH == CUBLAS_DEFAULT_MATH, "cublasMath_t");
_Static_assert(sizeof(cublasOperation_t) == sizeof(int) && sizeof(cudaDataType) == sizeof(int) &&
                   sizeof(cublasComputeType_t) == sizeof(int) &&
                   sizeof(cublasGemmAlgo_t) == sizeof(int) && sizeof(cublasStatus_t) == sizeof(int),
               "enums are passed as int");
_Static_assert(sizeof(cublasHandle_t) == sizeof(pcb_handle), "handle");

// The prototypes, parameter by parameter (enums stand in for int above).
static cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                 const void *, const void *, cudaDataType, int, const void *,
                                 cudaDataType, int, const void *, void *, cudaDataType, int,
                                 cublasComputeType_t, cublasGemmAlgo_t) = cublasGemmEx;
static cublasStatus_t (*gemm_sb_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                    int, const void *, const void *, cudaDataType, int, long long,
                                    const void *, cudaDataType, int, long long, const void *, void *,
                                    cudaDataType, int, long long, int, cublasComputeType_t,
                                    cublasGemmAlgo_t) = cublasGemmStridedBatchedEx;
static cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = cublasSetStream_v2;
static cublasStatus_t (*set_math)(cublasHandle_t, cublasMath_t) = cublasSetMathMode;
static cublasStatus_t (*create)(cublasHandle_t *) = cublasCreate_v2;
static cublasStatus_t (*destroy)(cublasHandle_t) = cublasDestroy_v2;
static cublasStatus_t (*version)(cublasHandle_t, int *) = cublasGetVersion_v2;

void *pancap_cublas_abi_check[] = {(void *)&gemm_ex, (void *)&gemm_sb_ex, (void *)&set_stream,
                                   (void *)&set_math, (void *)&create, (void *)&destroy,
                                   (void *)&version};
