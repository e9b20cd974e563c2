//go:build amd64 && cgo

// Interface of the AVX2 activation kernels in act_avx2.c.

#ifndef PANCAP_LINALG_ACT_H
#define PANCAP_LINALG_ACT_H

// pc_silu_mul computes o[i] = silu(a[i]) * c[i] for i < n (SwiGLU).
void pc_silu_mul(float *o, const float *a, const float *c, long n);

// pc_quick_gelu computes o[i] = a[i] * sigmoid(1.702 * a[i]) for i < n.
void pc_quick_gelu(float *o, const float *a, long n);

// pc_exp_shift computes o[i] = exp(a[i] - s) for i < n, every a[i] <= s
// (a softmax's numerators, s the maximum).
void pc_exp_shift(float *o, const float *a, float s, long n);

#endif
