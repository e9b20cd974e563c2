//go:build amd64 && cgo

// AVX2/FMA attention kernel: one call computes one head group's attention
// for a run of query rows of one sequence over every position they see,
// reading keys and values in place from the (paged) cache: fp32, or bf16 or
// fp16 widened exactly to fp32 (in registers, or as they are packed). Rows
// go PC_ATTN_ROWS at a time, sharing each key and value read.
//
// Every output row is computed in one fixed order that depends only on hd
// and the number of positions n the row sees, never on the other rows of
// the call, the row tile, the cache's blocking or the thread:
//   score(p, h) = dot(q_h, k_p,h) * scale, the dot in 8 fma lanes over
//     d = l, l+8, …, a fixed tree over the lanes and the hd%8 tail with
//     scalar fma in increasing d (score8);
//   e_p = exp(score_p - max_p score_p) (a vector Cephes expf);
//   sum = the e_p summed in 8 lanes over p = l, l+8, … < n, then hsum8;
//   out_h[d] = (e_0·v_0,h[d] + e_1·v_1,h[d] + …, fma in increasing p) * (1/sum).

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "attn.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

#include "expf8.h"
#include "hsum.h"
#include "widen.h"

#define R PC_ATTN_ROWS
#define SEG 16 // positions per segment of contiguous (dense) rows

static inline long round8(long n) { return (n + 7) & ~7L; }


static inline __attribute__((always_inline)) float hmax8(__m256 v) {
	__m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

// score8 computes s[i] = (Σ_d q[d]·kp[i][off+d]) · scale, d < hd, for the 8
// positions whose key rows (of type T, widened in registers) are kp[0..7]:
// lane l of position i's accumulator
// takes fma over d = l, l+8, … < hd rounded down to 8; the lanes are summed
// as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)) (eight at once, by hadd), and the
// hd%8 tail is added with scalar fma in increasing d. Every position gets the
// same sequence of operations, whatever its lane.
static inline __attribute__((always_inline)) void score8(const int T, const float *q,
	const void *const kp[8], long off, long hd, float scale, float *s) {
	__m256 a[8];
#pragma GCC unroll 8
	for (int i = 0; i < 8; i++)
		a[i] = _mm256_setzero_ps();
	long d = 0;
	for (; d + 8 <= hd; d += 8) {
		__m256 qv = _mm256_loadu_ps(q + d);
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			a[i] = _mm256_fmadd_ps(qv, load8(T, kp[i], off + d), a[i]);
	}
	__m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
	__m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
	__m256 r = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
	if (d < hd) {
		float t[8];
		_mm256_storeu_ps(t, r);
		for (int i = 0; i < 8; i++)
			for (long e = d; e < hd; e++)
				t[i] = __builtin_fmaf(q[e], load1(T, kp[i], off + e), t[i]);
		r = _mm256_loadu_ps(t);
	}
	_mm256_storeu_ps(s, _mm256_mul_ps(r, _mm256_set1_ps(scale)));
}

// wsum adds e[p]·v[p*ld + d] to o[d] for p < n in increasing p, d < 8·NV,
// v of type T (widened in registers); with TAIL (fp32 only) the last
// vector of v is read through mask (a head size that is not a multiple of
// 8: nothing past the head is touched).
static inline __attribute__((always_inline)) void wsum(const int NV, const int TAIL, const int T,
	float *o, const float *e, const void *v, long ld, long n, __m256i mask) {
	__m256 acc[8];
#pragma GCC unroll 8
	for (int i = 0; i < NV; i++)
		acc[i] = _mm256_loadu_ps(o + 8 * i);
	for (long p = 0; p < n; p++) {
		__m256 w = _mm256_broadcast_ss(e + p);
#pragma GCC unroll 8
		for (int i = 0; i < NV; i++) {
			__m256 x = TAIL && i == NV - 1 ? _mm256_maskload_ps((const float *)v + p * ld + 8 * i, mask)
						       : load8(T, v, p * ld + 8 * i);
			acc[i] = _mm256_fmadd_ps(w, x, acc[i]);
		}
	}
#pragma GCC unroll 8
	for (int i = 0; i < NV; i++)
		_mm256_storeu_ps(o + 8 * i, acc[i]);
}

#define WSUM_CASE(NV)                                                    \
	case 2 * NV:                                                     \
		wsum(NV, 0, T, o, e, v, ld, n, mask);                    \
		break;                                                   \
	case 2 * NV + 1:                                                 \
		wsum(NV, 1, T, o, e, v, ld, n, mask);                    \
		break;

static inline __attribute__((always_inline)) void wsum_n(const int T, int nv, int tail, float *o,
	const float *e, const void *v, long ld, long n, __m256i mask) {
	switch (2 * nv + tail) {
		WSUM_CASE(1)
		WSUM_CASE(2)
		WSUM_CASE(3)
		WSUM_CASE(4)
		WSUM_CASE(5)
		WSUM_CASE(6)
		WSUM_CASE(7)
		WSUM_CASE(8)
	}
}

// Packed rows (of queries, keys and values) are nh*hd + PAD floats apart:
// rows of the cache are often a multiple of 4 KiB apart, which maps the same
// element of each into one L1 set, fewer ways than a tile reads at once.
#define PAD 16

long pc_attn_scratch(long nh, long hd, long nmax) {
	return R * nh * (round8(nmax) + round8(hd)) + (R + 8 + SEG) * (nh * hd + PAD);
}

// segment returns the first row of the run of at most SEG positions starting
// at p, contiguous in the cache, and sets *end to its end (at most pe).
static inline long segment(const int32_t *blocks, long bs, long p, long pe, long *end) {
	long e = blocks ? (p / bs + 1) * bs : pe;
	e = e < p + SEG ? e : p + SEG;
	*end = e < pe ? e : pe;
	return blocks ? (long)blocks[p / bs] * bs + p % bs : p;
}

void pc_attn(float *out, const float *q, const void *k, const void *v, int kvt, long ld,
	const int32_t *blocks, long bs, long rows, long n0, int causal, long nh, long hd,
	float scale, float *scratch) {
	long ns = round8(n0 + (causal ? rows - 1 : 0)); // score row stride
	long hp = round8(hd);                           // output row stride
	long nv = hp / 8;
	int tail = hd % 8 != 0;
	static const int32_t ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1};
	__m256i mask = _mm256_loadu_si256((const __m256i *)(ones + (tail ? 8 - hd % 8 : 0)));
	long w = nh * hd, lp = w + PAD;
	float *sc = scratch;                // [R][nh][ns] scores, then exponentials
	float *acc = sc + R * nh * ns;      // [R][nh][hp] weighted sums of values
	float *qt = acc + R * nh * hp;      // [R][lp] the tile's queries
	float *kt = qt + R * lp;            // [8][lp] keys of 8 positions
	float *vt = kt + 8 * lp;            // [SEG][lp] values of a segment
	// Keys and values are read in place by one row, widened in registers
	// from a 16-bit cache; packed (widened to fp32) when several rows reuse
	// them, or when a 16-bit head size is not a multiple of 8 (no masked
	// 16-bit loads).
	int pack16 = kvt != PC_F32 && tail;
	for (long j0 = 0; j0 < rows; j0 += R) {
		int nr = rows - j0 < R ? (int)(rows - j0) : R;
		long n[R], nt = 0;
		float inv[R][nh];
		for (int r = 0; r < nr; r++) {
			n[r] = n0 + (causal ? j0 + r : 0);
			nt = n[r] > nt ? n[r] : nt;
		}
		widen_rows(PC_F32, qt, lp, q + j0 * ld, ld, nr, w);

		// Scores, 8 positions at a time: each key is read once for the
		// tile (packed when several rows reuse it). Lanes past a row's
		// positions are overwritten below; those past the tile's read the
		// last position's key again.
		int packed = nr > 1 || pack16;
		int kt_type = packed ? PC_F32 : kvt; // the type score8 and wsum read
		for (long p0 = 0; p0 < nt; p0 += 8) {
			const void *kp[8];
			long b = blocks ? p0 / bs : 0, o = blocks ? p0 % bs : p0;
			for (int i = 0; i < 8; i++) {
				if (p0 + i >= nt) {
					kp[i] = kp[i - 1];
					continue;
				}
				const char *src = (const char *)k + (blocks ? (long)blocks[b] * bs + o : o) * ld * esz(kvt);
				if (++o == bs && blocks)
					o = 0, b++;
				if (packed) {
					widen_rows(kvt, kt + i * lp, lp, src, ld, 1, w);
					kp[i] = kt + i * lp;
				} else
					kp[i] = src;
			}
			for (int r = 0; r < nr; r++)
				if (p0 < n[r])
					for (long h = 0; h < nh; h++) {
						const float *qh = qt + r * lp + h * hd;
						float *sh = sc + (r * nh + h) * ns + p0;
						switch (kt_type) {
						case PC_BF16:
							score8(PC_BF16, qh, kp, h * hd, hd, scale, sh);
							break;
						case PC_F16:
							score8(PC_F16, qh, kp, h * hd, hd, scale, sh);
							break;
						default:
							score8(PC_F32, qh, kp, h * hd, hd, scale, sh);
						}
					}
		}

		// Softmax numerators and their sums.
		for (int r = 0; r < nr; r++)
			for (long h = 0; h < nh; h++) {
				float *s = sc + (r * nh + h) * ns;
				long np = round8(n[r]);
				for (long p = n[r]; p < np; p++)
					s[p] = -INFINITY;
				__m256 m = _mm256_set1_ps(-INFINITY);
				for (long p = 0; p < np; p += 8)
					m = _mm256_max_ps(m, _mm256_loadu_ps(s + p));
				__m256 mx = _mm256_set1_ps(hmax8(m)), sum = _mm256_setzero_ps();
				for (long p = 0; p < np; p += 8) {
					__m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + p), mx));
					_mm256_storeu_ps(s + p, e);
					sum = _mm256_add_ps(sum, e);
				}
				inv[r][h] = n[r] > 0 ? 1 / hsum8(sum) : 0;
				float *o = acc + (r * nh + h) * hp;
				for (long d = 0; d < hp; d++)
					o[d] = 0;
			}

		// Weighted sums of values, a segment of positions at a time.
		for (long p0 = 0, p1; p0 < nt; p0 = p1) {
			const char *src = (const char *)v + segment(blocks, bs, p0, nt, &p1) * ld * esz(kvt);
			const void *vp = src;
			long lv = ld;
			if (packed) {
				widen_rows(kvt, vt, lp, src, ld, p1 - p0, w);
				vp = vt, lv = lp;
			}
			for (long h = 0; h < nh; h++)
				for (long c = 0; c < nv; c += 8) {
					int cn = nv - c < 8 ? (int)(nv - c) : 8;
					int ct = tail && c + cn == nv;
					for (int r = 0; r < nr; r++) {
						long pe = p1 < n[r] ? p1 : n[r];
						if (pe <= p0)
							continue;
						float *o = acc + (r * nh + h) * hp + 8 * c;
						const float *e = sc + (r * nh + h) * ns + p0;
						long off = h * hd + 8 * c;
						switch (kt_type) {
						case PC_BF16:
							wsum_n(PC_BF16, cn, ct, o, e, (const uint16_t *)vp + off, lv, pe - p0, mask);
							break;
						case PC_F16:
							wsum_n(PC_F16, cn, ct, o, e, (const uint16_t *)vp + off, lv, pe - p0, mask);
							break;
						default:
							wsum_n(PC_F32, cn, ct, o, e, (const float *)vp + off, lv, pe - p0, mask);
						}
					}
				}
		}

		for (int r = 0; r < nr; r++)
			for (long h = 0; h < nh; h++) {
				const float *o = acc + (r * nh + h) * hp;
				float *dst = out + (j0 + r) * ld + h * hd;
				__m256 f = _mm256_set1_ps(inv[r][h]);
				long d = 0;
				for (; d + 8 <= hd; d += 8)
					_mm256_storeu_ps(dst + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), f));
				for (; d < hd; d++)
					dst[d] = o[d] * inv[r][h];
			}
	}
}

#pragma GCC pop_options
