//go:build amd64 && cgo

// AVX2/FMA/F16C GEMM kernels: out[m×n] = x[m×k] · w[n×k]ᵀ with w in fp32,
// bf16 or fp16 and fp32 accumulation, computed over a range of columns.
//
// Every output element is reduced in one fixed order, whatever the tile,
// path, block sizes or number of rows:
//   lane l (0..7) accumulates fma(x[p], w[p], acc) for p = l, l+8, … < kv
//   (kv = k rounded down to a multiple of 8), in increasing p, from 0;
//   the 8 lanes are summed as ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7));
//   the tail p = kv … k-1 is then added with scalar fma in increasing p.
// bf16 and fp16 weights are widened exactly to fp32 before the fma, so
// widening a block of weights into scratch first or widening them in
// registers gives bit-identical results. That makes every
// row's result independent of m (batch invariance) and of how the columns
// are split over workers.

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "gemm.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

#include "hsum.h"
#include "widen.h"

#define CHUNK 24 // column chunk: a multiple of every tile width
#define KC 1024  // k block: a 4-row x tile of 16 KiB stays in L1 (tuned on Zen 3)
#define PAD 16   // floats between widened weight rows: no 4 KiB set aliasing

// tile accumulates acc[i][j] (MR×NR vectors) over p in [p0, p1) (multiples
// of 8): x rows at stride ldx, w rows (of type wt) at stride ldw. Each step
// also prefetches npf cache lines from *pf on into L2 (the next chunk's
// weights, so that memory and compute overlap), advancing *pf.
static inline __attribute__((always_inline)) void tile(const int MR, const int NR, const int wt,
	const float *x, long ldx, const void *w, long ldw, long p0, long p1, __m256 acc[4][8],
	const char **pf, int npf) {
	__m256 a[4][8];
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
		for (int j = 0; j < NR; j++)
			a[i][j] = acc[i][j];
	const char *q = *pf;
	for (long p = p0; p < p1; p += 8) {
		for (int f = 0; f < npf; f++, q += 64)
			_mm_prefetch(q, _MM_HINT_T1);
		if (MR * NR + NR + 1 <= 16) { // weights in registers, x streamed
			__m256 wv[8];
#pragma GCC unroll 8
			for (int j = 0; j < NR; j++)
				wv[j] = load8(wt, w, j * ldw + p);
#pragma GCC unroll 8
			for (int i = 0; i < MR; i++) {
				__m256 xv = _mm256_loadu_ps(x + i * ldx + p);
#pragma GCC unroll 8
				for (int j = 0; j < NR; j++)
					a[i][j] = _mm256_fmadd_ps(xv, wv[j], a[i][j]);
			}
		} else { // x in registers, weights streamed
			__m256 xv[4];
#pragma GCC unroll 8
			for (int i = 0; i < MR; i++)
				xv[i] = _mm256_loadu_ps(x + i * ldx + p);
#pragma GCC unroll 8
			for (int j = 0; j < NR; j++) {
				__m256 wv = load8(wt, w, j * ldw + p);
#pragma GCC unroll 8
				for (int i = 0; i < MR; i++)
					a[i][j] = _mm256_fmadd_ps(xv[i], wv, a[i][j]);
			}
		}
	}
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
		for (int j = 0; j < NR; j++)
			acc[i][j] = a[i][j];
	*pf = q;
}

// finish reduces the accumulators of an MR×NR tile, adds the k tail and
// stores the results at out (row stride ldo).
static inline __attribute__((always_inline)) void finish(const int MR, const int NR, const int wt,
	const float *x, long ldx, const void *w, long ldw, long kv, long k, __m256 acc[4][8],
	float *out, long ldo) {
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
		for (int j = 0; j < NR; j++) {
			float s = hsum8(acc[i][j]);
			for (long p = kv; p < k; p++)
				s = __builtin_fmaf(x[i * ldx + p], load1(wt, w, j * ldw + p), s);
			out[i * ldo + j] = s;
		}
}

static inline __attribute__((always_inline)) void zero(__m256 acc[4][8]) {
#pragma GCC unroll 8
	for (int i = 0; i < 4; i++)
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++)
			acc[i][j] = _mm256_setzero_ps();
}

// step runs an MR×NR tile over [p0, p1), its accumulators kept in buf
// between k blocks (the same fma sequence as one pass over all of k), and
// finishes it at the last block.
static inline __attribute__((always_inline)) void step(const int MR, const int NR, const int wt,
	const float *x, long ldx, const void *w, long ldw, long p0, long p1, long kv, long k,
	__m256 *buf, float *out, long ldo, const char **pf, int npf) {
	__m256 acc[4][8];
	if (p0 == 0)
		zero(acc);
	else
#pragma GCC unroll 8
		for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
			for (int j = 0; j < NR; j++)
				acc[i][j] = buf[i * NR + j];
	tile(MR, NR, wt, x, ldx, w, ldw, p0, p1, acc, pf, npf);
	if (p1 == kv) {
		finish(MR, NR, wt, x, ldx, w, ldw, kv, k, acc, out, ldo);
		return;
	}
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
		for (int j = 0; j < NR; j++)
			buf[i * NR + j] = acc[i][j];
}

// rows runs MR rows of x against nc <= CHUNK columns of w (row stride ldw,
// first row w), writing out[i*ldo + j]: k in blocks of KC, so that the x
// tile stays in L1 while the chunk's weights come from L2, and within a
// block tiles of NR columns plus single columns.
#define ROWS(MR, NR, WT)                                                                         \
	static void rows_##MR##_##WT(const float *x, long ldx, const void *w, long ldw, long kv,    \
		long k, long nc, float *out, long ldo, const char *pf, int npf) {                    \
		__m256 buf[MR * CHUNK];                                                              \
		long p0 = 0;                                                                         \
		do {                                                                                 \
			long p1 = kv - p0 < KC ? kv : p0 + KC;                                       \
			__m256 *b = buf;                                                             \
			long j = 0;                                                                  \
			for (; j + NR <= nc; j += NR, b += MR * NR)                                  \
				step(MR, NR, WT, x, ldx, (const char *)w + j * ldw * esz(WT), ldw, p0, p1, \
					kv, k, b, out + j, ldo, &pf, npf);                           \
			for (; j < nc; j++, b += MR)                                                 \
				step(MR, 1, WT, x, ldx, (const char *)w + j * ldw * esz(WT), ldw, p0, p1,  \
					kv, k, b, out + j, ldo, &pf, npf);                           \
			p0 = p1;                                                                     \
		} while (p0 < kv);                                                                   \
	}

// Tile widths per row count: the widest that keeps accumulators and
// operands in the 16 ymm registers.
#define NR_1 8
#define NR_2 6
#define NR_3 4
#define NR_4 3
static const int nr_of[5] = {0, NR_1, NR_2, NR_3, NR_4};
#define ROWS_ALL(WT) ROWS(4, NR_4, WT) ROWS(3, NR_3, WT) ROWS(2, NR_2, WT) ROWS(1, NR_1, WT)
ROWS_ALL(0)
ROWS_ALL(1)
ROWS_ALL(2)

typedef void (*rows_fn)(const float *, long, const void *, long, long, long, long, float *, long,
	const char *, int);
static const rows_fn rows_tab[3][5] = {
	{0, rows_1_0, rows_2_0, rows_3_0, rows_4_0},
	{0, rows_1_1, rows_2_1, rows_3_1, rows_4_1},
	{0, rows_1_2, rows_2_2, rows_3_2, rows_4_2},
};

long pc_gemm_scratch(long k) { return CHUNK * (k + PAD); }

// pc_gemm walks the columns in chunks of CHUNK whose weights stay in L2,
// and within a chunk the rows in groups of up to 4 whose x tile stays in
// L1 while the chunk's tiles run over it. With scratch and large m, a
// chunk's weights are widened (16-bit) or copied (fp32) once into it, rows
// padded by PAD floats, and shared by all row groups; without, they are
// read where they lie and 16-bit ones widened in registers (small m, where
// weights stream from memory once and the widening hides under the memory
// time).
void pc_gemm(int wt, float *out, long ldo, const float *x, long ldx, const void *w, long ldw,
	long m, long k, long j0, long j1, float *scratch) {
	long kv = k & ~7L;
	int widen = scratch && m > PC_PACK_M;
	for (long jc = j0; jc < j1; jc += CHUNK) {
		long nc = j1 - jc < CHUNK ? j1 - jc : CHUNK;
		const void *wc = (const char *)w + jc * ldw * esz(wt);
		long ldc = ldw;
		int t = wt;
		if (widen) {
			widen_rows(wt, scratch, k + PAD, wc, ldw, nc, k);
			wc = scratch;
			ldc = k + PAD;
			t = PC_F32;
		}
		for (long i = 0; i < m;) {
			int mr = m - i >= 4 ? 4 : (int)(m - i);
			// The first row group prefetches the next chunk's 16-bit
			// weights (contiguous rows only), spread evenly over its
			// steps: their short rows defeat the hardware prefetcher
			// (+25…60% decode bandwidth on Zen 3; neutral for fp32).
			const char *pf = (const char *)wc;
			int npf = 0;
			long next = j1 - jc - CHUNK < CHUNK ? j1 - jc - CHUNK : CHUNK;
			if (i == 0 && next > 0 && ldw == k && kv > 0 && wt != PC_F32) {
				long steps = (nc / nr_of[mr] + nc % nr_of[mr]) * (kv / 8);
				long lines = (next * k * esz(wt) + 63) / 64;
				npf = (int)((lines + steps - 1) / steps);
				if (npf > 4)
					npf = 4;
				pf = (const char *)w + (jc + CHUNK) * k * esz(wt);
			}
			rows_tab[t][mr](x + i * ldx, ldx, wc, ldc, kv, k, nc, out + i * ldo + jc, ldo, pf, npf);
			i += mr;
		}
	}
}

#pragma GCC pop_options
