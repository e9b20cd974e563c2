//go:build amd64 && cgo

// AVX2/F16C rounding of float32 rows to a 16-bit KV cache: vcvtps2ph for
// IEEE half (round to nearest even, subnormals and infinities as IEEE
// says), integer rounding for bfloat16 (b + 0x7fff + lsb, then the top 16
// bits). Both give the bits of linalg.F32ToF16 / F32ToBF16; a vector with a
// NaN stops the kernel (the scalar path makes NaN canonical).

#include <immintrin.h>

#include "round.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

static inline int has_nan(__m256 x) { return _mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)); }

long pc_round_f16(uint16_t *dst, const float *src, long n) {
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 x = _mm256_loadu_ps(src + i);
		if (has_nan(x))
			return i;
		_mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
	}
	return i;
}

long pc_round_bf16(uint16_t *dst, const float *src, long n) {
	const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 x = _mm256_loadu_ps(src + i);
		if (has_nan(x))
			return i;
		__m256i b = _mm256_castps_si256(x);
		__m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), one);
		__m256i r = _mm256_srli_epi32(_mm256_add_epi32(b, _mm256_add_epi32(bias, lsb)), 16);
		// pack the 8 lanes' low halves: within each 128-bit lane, then across
		__m256i p = _mm256_packus_epi32(r, r);
		p = _mm256_permute4x64_epi64(p, 0x08);
		_mm_storeu_si128((__m128i *)(dst + i), _mm256_castsi256_si128(p));
	}
	return i;
}

#pragma GCC pop_options
