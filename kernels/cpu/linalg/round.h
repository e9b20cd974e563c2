//go:build amd64 && cgo

// Interface of the AVX2 rounding kernels in round_avx2.c.

#ifndef PANCAP_LINALG_ROUND_H
#define PANCAP_LINALG_ROUND_H

#include <stdint.h>

// pc_round_f16 rounds src[i] to IEEE half precision, to nearest, ties to
// even, into dst[i] for i < n; pc_round_bf16 to bfloat16 likewise. A vector
// of 8 holding a NaN is left to the caller: both return the index of the
// first element not converted (n when all were), so that the caller's
// scalar path, whose NaN is canonical, converts from there.
long pc_round_f16(uint16_t *dst, const float *src, long n);
long pc_round_bf16(uint16_t *dst, const float *src, long n);

#endif
