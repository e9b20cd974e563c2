// Emulated nvcuda::wmma (see emu.h): the tensor-core fragments kernels.cu
// uses. A fragment is opaque in CUDA (a kernel never indexes it by lane), so
// here every emulated thread holds the whole tile and computes the whole
// product, in float32 with the k terms summed in order (a GPU's tensor cores
// sum in their own order: results agree to rounding, not bitwise).
#pragma once
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "emu.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  float x[rows * cols];  // row-major, widened
};

inline float emu_widen(float v) { return v; }
inline float emu_widen(__half v) { return __half2float(v); }
inline float emu_widen(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, float v) {
  for (float &e : f.x) e = v;
}

// load_matrix_sync reads an A or B tile: element (r, c) at p[r·ldm + c]
// (row_major) or p[c·ldm + r] (col_major).
template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, L>;
  for (int r = 0; r < F::rows; r++)
    for (int c = 0; c < F::cols; c++)
      f.x[r * F::cols + c] = emu_widen(std::is_same_v<L, col_major> ? p[c * ldm + r] : p[r * ldm + c]);
}

template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm,
                              layout_t l) {
  for (int r = 0; r < M; r++)
    for (int c = 0; c < N; c++) (l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = f.x[r * N + c];
}

// mma_sync: d = a·b + c.
template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
  float out[M * N];
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; k++) s = fmaf(a.x[i * K + k], b.x[k * N + j], s);
      out[i * N + j] = s;
    }
  memcpy(d.x, out, sizeof out);
}
}  // namespace wmma
}  // namespace nvcuda
