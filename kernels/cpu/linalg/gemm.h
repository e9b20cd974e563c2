//go:build amd64 && cgo

// Interface of the AVX2 GEMM kernels in gemm_avx2.c.

#ifndef PANCAP_LINALG_GEMM_H
#define PANCAP_LINALG_GEMM_H

enum { PC_F32 = 0, PC_BF16 = 1, PC_F16 = 2 };

// Rows above which weights are widened/copied into scratch once per block.
#define PC_PACK_M 16

// pc_gemm computes out[i*ldo + j] = sum_p x[i*ldx + p] * w[j*ldw + p] for
// i < m, j0 <= j < j1, p < k, with w of type wt. scratch (pc_gemm_scratch(k)
// floats) may be NULL, which reads the weights where they lie (same
// results bit for bit).
void pc_gemm(int wt, float *out, long ldo, const float *x, long ldx, const void *w, long ldw,
	long m, long k, long j0, long j1, float *scratch);

// pc_gemm_scratch is the number of floats of scratch pc_gemm uses for k.
long pc_gemm_scratch(long k);

#endif
