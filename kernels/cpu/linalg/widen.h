//go:build amd64 && cgo

// Widening of fp32, bf16 and fp16 elements to fp32, shared by the AVX2
// kernels (gemm_avx2.c for weights, attn_avx2.c for 16-bit KV caches);
// include it after gemm.h's PC_* types, inside a `#pragma GCC target` region
// with avx2 and f16c. Both conversions are exact, so a kernel may widen in
// registers or into scratch first and get the same bits.

#ifndef PANCAP_LINALG_WIDEN_H
#define PANCAP_LINALG_WIDEN_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

// load8 widens the 8 elements of type t at p + off (elements) to fp32.
static inline __attribute__((always_inline)) __m256 load8(int t, const void *p, long off) {
	switch (t) {
	case PC_BF16: {
		__m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + off));
		return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
	}
	case PC_F16:
		return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + off)));
	default:
		return _mm256_loadu_ps((const float *)p + off);
	}
}

// load1 widens the element of type t at p + off to fp32.
static inline __attribute__((always_inline)) float load1(int t, const void *p, long off) {
	switch (t) {
	case PC_BF16: {
		uint32_t b = (uint32_t)((const uint16_t *)p)[off] << 16;
		float f;
		memcpy(&f, &b, 4);
		return f;
	}
	case PC_F16:
		return _cvtsh_ss(((const uint16_t *)p)[off]);
	default:
		return ((const float *)p)[off];
	}
}

// esz is the byte size of an element of type t.
static inline long esz(int t) { return t == PC_F32 ? 4 : 2; }

// widen_rows converts n rows of w elements of type t (row stride ld
// elements, first row src) to fp32 rows at dst (row stride ldd).
static inline void widen_rows(int t, float *dst, long ldd, const void *src, long ld, long n, long w) {
	for (long r = 0; r < n; r++, dst += ldd) {
		const char *row = (const char *)src + r * ld * esz(t);
		long p = 0;
		for (; p + 8 <= w; p += 8)
			_mm256_storeu_ps(dst + p, load8(t, row, p));
		for (; p < w; p++)
			dst[p] = load1(t, row, p);
	}
}

#endif
