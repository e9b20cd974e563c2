//go:build amd64 && cgo

// Interface of the AVX2 attention kernel in attn_avx2.c.

#ifndef PANCAP_LINALG_ATTN_H
#define PANCAP_LINALG_ATTN_H

#include <stdint.h>

#include "gemm.h"

// Query rows computed together: they share every key and value read.
#define PC_ATTN_ROWS 8

// pc_attn computes attention for rows query rows of one group of nh heads
// of hd elements. Row j's queries are q[j*ld + h*hd + d] and its output
// out[j*ld + h*hd + d]; it attends to positions 0 … n0-1, plus j more when
// causal. Position p's keys and values are row r(p) of k and v (row stride
// ld elements of type kvt, PC_F32, PC_BF16 or PC_F16): r(p) =
// blocks[p/bs]*bs + p%bs, or r(p) = p when blocks is NULL.
// Scores are dot products scaled by scale. scratch holds
// pc_attn_scratch(nh, hd, nmax) floats, nmax the most positions a row sees.
void pc_attn(float *out, const float *q, const void *k, const void *v, int kvt, long ld,
	const int32_t *blocks, long bs, long rows, long n0, int causal, long nh, long hd,
	float scale, float *scratch);

// pc_attn_scratch is the number of floats of scratch pc_attn uses.
long pc_attn_scratch(long nh, long hd, long nmax);

#endif
