// cublas.cpp — an emulated cuBLAS for tests (libcublas.so.12 beside the
// emulated libcuda.so.1, built by build.sh): the entry points the backend
// resolves (kernels/cuda/cublas.go), with the GEMMs computed on the CPU in
// float64 from the inputs as stored (fp32, fp16 or bf16), float32 out, run
// in order on the emulated stream. Host pointer mode, column-major, as
// cuBLAS.
#include <cstdint>
#include <cstring>

#include "../../../../kernels/cuda/cublas_shim.h"
#include "cuemu.h"

namespace {

constexpr int kNotSupported = 15, kInvalidValue = 7, kExecutionFailed = 13;

struct Handle {
  void *stream = nullptr;
};

double load(const void *p, int type, long i) {
  uint16_t h;
  switch (type) {
    case PCB_R_32F:
      return ((const float *)p)[i];
    case PCB_R_16BF: {
      h = ((const uint16_t *)p)[i];
      uint32_t u = (uint32_t)h << 16;
      float f;
      memcpy(&f, &u, 4);
      return f;
    }
    default: {  // PCB_R_16F
      h = ((const uint16_t *)p)[i];
      _Float16 f;
      memcpy(&f, &h, 2);
      return (double)f;
    }
  }
}

bool known(int type) { return type == PCB_R_32F || type == PCB_R_16F || type == PCB_R_16BF; }

// gemm queues C = alpha·op(A)·op(B) + beta·C for count matrices.
int gemm(int ta, int tb, int m, int n, int k, float alpha, const void *A, int at, int lda, long long sa,
         const void *B, int bt, int ldb, long long sb, float beta, void *C, int ct, int ldc, long long sc,
         int count, int compute) {
  if (!known(at) || !known(bt) || ct != PCB_R_32F || compute != PCB_COMPUTE_32F) return kNotSupported;
  if (m < 0 || n < 0 || k < 0 || count < 0 || (ta != PCB_OP_N && ta != PCB_OP_T) ||
      (tb != PCB_OP_N && tb != PCB_OP_T) || ldc < m || lda < (ta == PCB_OP_N ? m : k) ||
      ldb < (tb == PCB_OP_N ? k : n))
    return kInvalidValue;
  std::function<void()> op = [=] {
    for (int b = 0; b < count; b++) {
      const char *a0 = (const char *)A + sa * b * (at == PCB_R_32F ? 4 : 2);
      const char *b0 = (const char *)B + sb * b * (bt == PCB_R_32F ? 4 : 2);
      float *c0 = (float *)C + sc * b;
      for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
          double s = 0;
          for (int p = 0; p < k; p++) {
            long ai = ta == PCB_OP_N ? i + (long)p * lda : p + (long)i * lda;
            long bi = tb == PCB_OP_N ? p + (long)j * ldb : j + (long)p * ldb;
            s += load(a0, at, ai) * load(b0, bt, bi);
          }
          float &c = c0[i + (long)j * ldc];
          c = (float)(alpha * s + (beta == 0 ? 0.0 : (double)beta * c));
        }
    }
  };
  return pancap_cuemu_enqueue(CUEMU_GEMM, &op) ? kExecutionFailed : PCB_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

int cublasCreate_v2(pcb_handle *h) {
  *h = new Handle;
  return PCB_STATUS_SUCCESS;
}

int cublasDestroy_v2(pcb_handle h) {
  delete (Handle *)h;
  return PCB_STATUS_SUCCESS;
}

int cublasGetVersion_v2(pcb_handle, int *v) {
  *v = 120000;
  return PCB_STATUS_SUCCESS;
}

int cublasSetStream_v2(pcb_handle h, void *s) {
  ((Handle *)h)->stream = s;
  return PCB_STATUS_SUCCESS;
}

int cublasSetMathMode(pcb_handle, int mode) { return mode == PCB_DEFAULT_MATH ? PCB_STATUS_SUCCESS : kNotSupported; }

int cublasGemmEx(pcb_handle, int ta, int tb, int m, int n, int k, const void *alpha, const void *A, int at,
                 int lda, const void *B, int bt, int ldb, const void *beta, void *C, int ct, int ldc, int compute,
                 int) {
  return gemm(ta, tb, m, n, k, *(const float *)alpha, A, at, lda, 0, B, bt, ldb, 0, *(const float *)beta, C, ct,
              ldc, 0, 1, compute);
}

int cublasGemmStridedBatchedEx(pcb_handle, int ta, int tb, int m, int n, int k, const void *alpha, const void *A,
                               int at, int lda, long long sa, const void *B, int bt, int ldb, long long sb,
                               const void *beta, void *C, int ct, int ldc, long long sc, int count, int compute,
                               int) {
  return gemm(ta, tb, m, n, k, *(const float *)alpha, A, at, lda, sa, B, bt, ldb, sb, *(const float *)beta, C, ct,
              ldc, sc, count, compute);
}

}  // extern "C"
