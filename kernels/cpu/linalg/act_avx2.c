//go:build amd64 && cgo

// AVX2/FMA activation kernels: the sigmoid-gated activations of the MLPs
// and the exponentials of a softmax, 8 elements at a time with exp8.
// sigmoid(t) is computed from e = exp(-|t|) (never above 1, so no
// overflow) as 1/(1+e) for t >= 0 and e/(1+e) below:
// within a few ulp of the exact value. Every element gets the same
// operations (a tail shorter than 8 goes through a padded vector), so a
// result never depends on where an element lies in the call.

#include <immintrin.h>
#include <string.h>

#include "act.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

#include "expf8.h"

// sigmoid8 is sigmoid(t) on 8 lanes.
static inline __attribute__((always_inline)) __m256 sigmoid8(__m256 t) {
	const __m256 one = _mm256_set1_ps(1.0f);
	__m256 abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), t);
	__m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), abs));
	__m256 num = _mm256_blendv_ps(e, one, _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_GE_OQ));
	return _mm256_div_ps(num, _mm256_add_ps(one, e));
}

// act8 is o = a·sigmoid(k·a), times c when c is not NULL.
static inline __attribute__((always_inline)) __m256 act8(__m256 a, float k, const float *c) {
	__m256 o = _mm256_mul_ps(a, sigmoid8(_mm256_mul_ps(a, _mm256_set1_ps(k))));
	return c ? _mm256_mul_ps(o, _mm256_loadu_ps(c)) : o;
}

static void act(float *o, const float *a, const float *c, long n, float k) {
	long i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(o + i, act8(_mm256_loadu_ps(a + i), k, c ? c + i : NULL));
	if (i < n) {
		float ta[8] = {0}, tc[8] = {0}, to[8];
		memcpy(ta, a + i, (n - i) * sizeof(float));
		if (c)
			memcpy(tc, c + i, (n - i) * sizeof(float));
		_mm256_storeu_ps(to, act8(_mm256_loadu_ps(ta), k, c ? tc : NULL));
		memcpy(o + i, to, (n - i) * sizeof(float));
	}
}

void pc_silu_mul(float *o, const float *a, const float *c, long n) { act(o, a, c, n, 1.0f); }

void pc_quick_gelu(float *o, const float *a, long n) { act(o, a, NULL, n, 1.702f); }

void pc_exp_shift(float *o, const float *a, float s, long n) {
	__m256 sv = _mm256_set1_ps(s);
	long i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(o + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(a + i), sv)));
	if (i < n) {
		float ta[8], to[8];
		for (int j = 0; j < 8; j++)
			ta[j] = s;
		memcpy(ta, a + i, (n - i) * sizeof(float));
		_mm256_storeu_ps(to, exp8(_mm256_sub_ps(_mm256_loadu_ps(ta), sv)));
		memcpy(o + i, to, (n - i) * sizeof(float));
	}
}

#pragma GCC pop_options
