//go:build amd64 && cgo

// hsum8, shared by the AVX2 kernels (gemm_avx2.c, attn_avx2.c); include it
// inside their `#pragma GCC target` region.

#ifndef PANCAP_LINALG_HSUM_H
#define PANCAP_LINALG_HSUM_H

#include <immintrin.h>

// hsum8 sums the 8 lanes in the fixed tree ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)),
// part of every kernel's documented reduction order.
static inline __attribute__((always_inline)) float hsum8(__m256 v) {
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

#endif
