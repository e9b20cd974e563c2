// kernels.cu — the CUDA backend's own kernels (everything but the GEMMs,
// which go through cuBLAS; gemm_ref is the batch-invariant fallback).
//
// Compiled to PTX for compute_80 by tools/cuda/build-ptx.sh; the PTX is
// committed under ptx/ and embedded into the Go package, so building the
// backend never needs nvcc.
//
// Conventions, shared with backend.go:
//   - activations are float32, row-major;
//   - weights are raw device bytes with a dtype code: 1 float32, 2 bfloat16,
//     3 float16 (kernels.DType's values);
//   - every kernel treats rows independently and reduces in an order that
//     does not depend on the number of rows (batch invariance).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define DT_F32 1
#define DT_BF16 2
#define DT_F16 3

// ldw widens element i of a weight of dtype dt to float32.
__device__ __forceinline__ float ldw(const void* w, int dt, long i) {
  if (dt == DT_BF16) return __bfloat162float(((const __nv_bfloat16*)w)[i]);
  if (dt == DT_F16) return __half2float(((const __half*)w)[i]);
  return ((const float*)w)[i];
}

// store_as stores v as element i of p in dtype dt (16-bit types rounded to
// nearest, ties to even): the one way a kernel writes a 16-bit value (the
// GEMM inputs for cuBLAS, KV-cache rows).
__device__ __forceinline__ void store_as(void* p, int dt, long i, float v) {
  if (dt == DT_BF16)
    ((__nv_bfloat16*)p)[i] = __float2bfloat16_rn(v);
  else if (dt == DT_F16)
    ((__half*)p)[i] = __float2half_rn(v);
  else
    ((float*)p)[i] = v;
}

// block_sum returns the sum of v over the block (blockDim.x a multiple of 32,
// at most 1024) to every thread. The reduction tree is fixed by blockDim.x.
__device__ float block_sum(float v) {
  __shared__ float part[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < nw ? part[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// block_max is block_sum with max.
__device__ float block_max(float v) {
  __shared__ float part[32];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < nw ? part[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// ---------------------------------------------------------------------------
// GEMM fallback: out[m × n] = x[m × k] · w[n × k]ᵀ (+ bias[n]).
// One thread per output, 16×16 tiles through shared memory, each output's
// dot product accumulated strictly in k order: bitwise independent of m.

#define GT 16

extern "C" __global__ void gemm_ref(float* out, const float* x, const void* w, int wdt,
                                    const void* bias, int bdt, int m, int n, int k) {
  __shared__ float xs[GT][GT + 1];
  __shared__ float ws[GT][GT + 1];
  int row = blockIdx.y * GT + threadIdx.y;  // in m
  int col = blockIdx.x * GT + threadIdx.x;  // in n
  int wrow = blockIdx.x * GT + threadIdx.y;
  float acc = 0.f;
  for (int p0 = 0; p0 < k; p0 += GT) {
    int p = p0 + threadIdx.x;
    xs[threadIdx.y][threadIdx.x] = (row < m && p < k) ? x[(long)row * k + p] : 0.f;
    ws[threadIdx.y][threadIdx.x] = (wrow < n && p < k) ? ldw(w, wdt, (long)wrow * k + p) : 0.f;
    __syncthreads();
    int lim = min(GT, k - p0);
    for (int q = 0; q < lim; q++) acc = fmaf(xs[threadIdx.y][q], ws[threadIdx.x][q], acc);
    __syncthreads();
  }
  if (row < m && col < n) {
    if (bias) acc += ldw(bias, bdt, col);
    out[(long)row * n + col] = acc;
  }
}

// to_half converts n float32 values to the 16-bit dtype dt (round to
// nearest even), the cuBLAS path's activation input where its producer did
// not write it (rmsnorm and silu_mul do).
extern "C" __global__ void to_half(void* dst, const float* src, long n, int dt) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) store_as(dst, dt, i, src[i]);
}

// bias_rows fills out[m × n] with bias[n] in every row (cuBLAS then adds the
// product with beta = 1).
extern "C" __global__ void bias_rows(float* out, const void* bias, int bdt, int m, int n) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < (long)m * n) out[i] = ldw(bias, bdt, i % n);
}

// ---------------------------------------------------------------------------
// Gathers and weight copies.

// embed: out[i] = table[ids[i]] for ids[i] ≥ 0; one block per row.
extern "C" __global__ void embed(float* out, const void* table, int dt, const int32_t* ids,
                                 int width) {
  int id = ids[blockIdx.x];
  if (id < 0) return;
  float* o = out + (long)blockIdx.x * width;
  for (int j = threadIdx.x; j < width; j += blockDim.x) o[j] = ldw(table, dt, (long)id * width + j);
}

// weight_to: dst[i] = w[i] (accumulate 0) or dst[i] += w[i] (accumulate 1).
extern "C" __global__ void weight_to(float* dst, const void* w, int dt, long n, int accumulate) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = ldw(w, dt, i);
  dst[i] = accumulate ? dst[i] + v : v;
}

// scatter_rows (scatter 1): dst[rows[i]] = src[i]; gather (scatter 0):
// dst[i] = src[rows[i]]. One block per listed row.
extern "C" __global__ void move_rows(float* dst, const float* src, const int32_t* rows, int width,
                                     int scatter) {
  long r = rows[blockIdx.x];
  long di = scatter ? r : blockIdx.x, si = scatter ? blockIdx.x : r;
  for (int j = threadIdx.x; j < width; j += blockDim.x) dst[di * width + j] = src[si * width + j];
}

// ---------------------------------------------------------------------------
// Normalisations, one block per row.

// rmsnorm: out = x · rsqrt(mean(x²) + eps) · w. When add is non-null it is
// the fused residual form: x += add first (x is written back), then the norm.
// When half is non-null, out is also written to it in dtype hdt (the next
// GEMM's 16-bit input).
extern "C" __global__ void rmsnorm(float* out, float* x, const float* add, const void* w, int wdt,
                                  int width, float eps, void* half, int hdt) {
  float* xr = x + (long)blockIdx.x * width;
  float* o = out + (long)blockIdx.x * width;
  float ss = 0.f;
  for (int j = threadIdx.x; j < width; j += blockDim.x) {
    float v = xr[j];
    if (add) {
      v += add[(long)blockIdx.x * width + j];
      xr[j] = v;
    }
    ss += v * v;
  }
  ss = block_sum(ss);
  float r = rsqrtf(ss / width + eps);
  for (int j = threadIdx.x; j < width; j += blockDim.x) {
    float v = ldw(w, wdt, j) * (xr[j] * r);
    o[j] = v;
    if (half) store_as(half, hdt, (long)blockIdx.x * width + j, v);
  }
}

// layernorm: out = (x − mean) · rsqrt(var + eps) · w + b (two passes).
extern "C" __global__ void layernorm(float* out, const float* x, const void* w, int wdt,
                                    const void* b, int bdt, int width, float eps) {
  const float* xr = x + (long)blockIdx.x * width;
  float* o = out + (long)blockIdx.x * width;
  float s = 0.f;
  for (int j = threadIdx.x; j < width; j += blockDim.x) s += xr[j];
  float mean = block_sum(s) / width;
  float vs = 0.f;
  for (int j = threadIdx.x; j < width; j += blockDim.x) {
    float d = xr[j] - mean;
    vs += d * d;
  }
  float r = rsqrtf(block_sum(vs) / width + eps);
  for (int j = threadIdx.x; j < width; j += blockDim.x)
    o[j] = (xr[j] - mean) * r * ldw(w, wdt, j) + ldw(b, bdt, j);
}

// rope_store takes row blockIdx.x of qkv[m × 3w] (w = heads·hd: query, key,
// value), writes the query rotated to q[m × w] and the key rotated and the
// value to row slots[row] of the caches kc and vc (dtype cdt, through
// store_as). cs[p·hd …] holds position p's cosines [hd/2] then sines [hd/2],
// computed on the host as the CPU backend computes them; the products and
// sums are rounded one by one (no fma), as the CPU's, so the rotation is the
// CPU's bit for bit.
extern "C" __global__ void rope_store(float* q, void* kc, void* vc, int cdt, const float* qkv,
                                     const int32_t* pos, const int32_t* slots, const float* cs,
                                     int heads, int hd) {
  const int half = hd / 2, w = heads * hd;
  const float* row = qkv + (long)blockIdx.x * 3 * w;
  float* qo = q + (long)blockIdx.x * w;
  const long slot = (long)slots[blockIdx.x] * w;
  const float* cp = cs + (long)pos[blockIdx.x] * hd;
  for (int i = threadIdx.x; i < heads * half; i += blockDim.x) {
    const int a = (i / half) * hd + i % half, b = a + half;
    const float c = cp[i % half], s = cp[half + i % half];
    qo[a] = __fsub_rn(__fmul_rn(row[a], c), __fmul_rn(row[b], s));
    qo[b] = __fadd_rn(__fmul_rn(row[b], c), __fmul_rn(row[a], s));
    store_as(kc, cdt, slot + a, __fsub_rn(__fmul_rn(row[w + a], c), __fmul_rn(row[w + b], s)));
    store_as(kc, cdt, slot + b, __fadd_rn(__fmul_rn(row[w + b], c), __fmul_rn(row[w + a], s)));
  }
  for (int j = threadIdx.x; j < w; j += blockDim.x) {
    store_as(vc, cdt, slot + j, row[2 * w + j]);
    if (j % hd >= 2 * half) {  // an odd head dimension's last element is not rotated
      qo[j] = row[j];
      store_as(kc, cdt, slot + j, row[w + j]);
    }
  }
}

// ---------------------------------------------------------------------------
// Elementwise.

#define EW_ADD 0
#define EW_GELU 1
#define EW_QUICK_GELU 2

// elementwise: out = op(a, b) over n elements; out may alias a or b.
extern "C" __global__ void elementwise(float* out, const float* a, const float* b, long n, int op) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = a[i];
  switch (op) {
    case EW_ADD:
      v += b[i];
      break;
    case EW_GELU:
      v = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
      break;
    default:
      v = v / (1.f + expf(-1.702f * v));
  }
  out[i] = v;
}

// silu_mul: out[r][j] = silu(gu[r][j]) · gu[r][width + j] for the rows of
// gu[m × 2·width] (gate and up side by side), n = m·width; when half is
// non-null out is also written to it in dtype hdt (the down GEMM's input).
extern "C" __global__ void silu_mul(float* out, const float* gu, int width, long n, void* half,
                                   int hdt) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  long r = i / width, j = i % width;
  float g = gu[2 * r * width + j];
  float v = g / (1.f + expf(-g)) * gu[(2 * r + 1) * width + j];
  out[i] = v;
  if (half) store_as(half, hdt, i, v);
}

// softmax over each row of x[m × width], in place (max-subtracted).
extern "C" __global__ void softmax(float* x, int width) {
  float* r = x + (long)blockIdx.x * width;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < width; j += blockDim.x) mx = fmaxf(mx, r[j]);
  mx = block_max(mx);
  float s = 0.f;
  for (int j = threadIdx.x; j < width; j += blockDim.x) {
    float e = expf(r[j] - mx);
    r[j] = e;
    s += e;
  }
  float inv = 1.f / block_sum(s);
  for (int j = threadIdx.x; j < width; j += blockDim.x) r[j] *= inv;
}

// argmax_before reports whether value v at index j comes before best at bi
// in sample.Argmax's order: a NaN before every number (the first NaN wins,
// as in torch.argmax), else the larger value, the lower index among equals.
__device__ __forceinline__ bool argmax_before(float v, int j, float best, int bi) {
  bool vn = v != v, bn = best != best;
  if (vn || bn) return vn && (!bn || j < bi);
  return v > best || (v == best && j < bi);
}

// argmax writes, for each row of x[m × width], the index of its first
// value in argmax_before's order to ids[row].
extern "C" __global__ void argmax(int32_t* ids, const float* x, int width) {
  const float* r = x + (long)blockIdx.x * width;
  float best = -INFINITY;
  int bi = 0x7fffffff;
  for (int j = threadIdx.x; j < width; j += blockDim.x) {
    float v = r[j];
    if (argmax_before(v, j, best, bi)) best = v, bi = j;
  }
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, best, o);
    int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (argmax_before(ov, oi, best, bi)) best = ov, bi = oi;
  }
  __shared__ float sv[32];
  __shared__ int si[32];
  if ((threadIdx.x & 31) == 0) sv[threadIdx.x >> 5] = best, si[threadIdx.x >> 5] = bi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int i = 1; i < (int)(blockDim.x >> 5); i++)
      if (argmax_before(sv[i], si[i], best, bi)) best = sv[i], bi = si[i];
    ids[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
  }
}

// ---------------------------------------------------------------------------
// Attention, flash style: a block owns up to AQ query rows of one sequence
// and one head and walks a range of at most ASPLIT keys in chunks of AK,
// keeping a running max, sum and output per row (online softmax). Each
// (row, head) gets one partial per key range; attn_combine merges them in
// range order. The ranges depend only on the sequence's own length, so a
// row's result does not depend on the batch (split-K for decode, the same
// code for prefill and the ViT's dense attention).

#define AQ 16       // query rows per block (4 warps × 4 rows)
#define AK 32       // keys per chunk (one per lane)
#define MAXHD 128   // largest head dimension
#define ASPLIT 256  // keys per partial (split-K)

// AttnSeq describes one sequence: its query rows [row, row+rows) sit at
// positions pos, pos+1, …; keys come from the paged cache through
// blocks[blk_off…] (blk_off ≥ 0) or from dense rows key_base+p (blk_off < 0).
// A causal row at position P sees keys 0…P; a non-causal one sees nkeys.
struct AttnSeq {
  int row, rows, pos, nkeys, blk_off, key_base;
};

// AttnWork is one block's work: a sequence, its first query row (absolute)
// and row count, and the key range [k0, k1).
struct AttnWork {
  int seq, row0, nrows, k0, k1;
};

// attn_partial writes, for every row r of its work item and head h, the
// triple (max, sum, unnormalised output[hd]) to
// part[((work·AQ + r) · heads + h) · (hd + 2)].
extern "C" __global__ void __launch_bounds__(128)
    attn_partial(float* part, const float* q, const float* kc, const float* vc,
                 const AttnSeq* seqs, const AttnWork* work, const int32_t* blocks, int heads,
                 int hd, int block_size, int causal, float scale) {
  __shared__ float qs[AQ][MAXHD];
  __shared__ float ks[AK][MAXHD + 1];
  __shared__ float vs[AK][MAXHD];
  const AttnWork wk = work[blockIdx.x];
  const AttnSeq sq = seqs[wk.seq];
  const int h = blockIdx.y, width = heads * hd;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  for (int i = threadIdx.x; i < AQ * hd; i += blockDim.x) {
    int r = i / hd, d = i % hd;
    qs[r][d] = r < wk.nrows ? q[(long)(wk.row0 + r) * width + h * hd + d] : 0.f;
  }
  float m[4], l[4], acc[4][4];
  int lim[4];  // keys [0, lim) visible to each of the warp's rows
  _Pragma("unroll") for (int i = 0; i < 4; i++) {
    m[i] = -INFINITY;
    l[i] = 0.f;
    _Pragma("unroll") for (int c = 0; c < 4; c++) acc[i][c] = 0.f;
    int r = warp * 4 + i;
    int qpos = sq.pos + (wk.row0 - sq.row) + r;
    lim[i] = r >= wk.nrows ? 0 : (causal ? qpos + 1 : sq.nkeys);
  }
  for (int c0 = wk.k0; c0 < wk.k1; c0 += AK) {
    __syncthreads();
    for (int i = threadIdx.x; i < AK * hd; i += blockDim.x) {
      int j = i / hd, d = i % hd, p = c0 + j;
      float kv = 0.f, vv = 0.f;
      if (p < wk.k1) {
        long krow = sq.blk_off >= 0
                        ? (long)blocks[sq.blk_off + p / block_size] * block_size + p % block_size
                        : (long)sq.key_base + p;
        kv = kc[krow * width + h * hd + d];
        vv = vc[krow * width + h * hd + d];
      }
      ks[j][d] = kv;
      vs[j][d] = vv;
    }
    __syncthreads();
    const int p = c0 + lane;
    _Pragma("unroll") for (int i = 0; i < 4; i++) {
      const int r = warp * 4 + i;
      float s = -INFINITY;
      if (p < lim[i] && p < wk.k1) {
        float dot = 0.f;
        for (int d = 0; d < hd; d++) dot += qs[r][d] * ks[lane][d];
        s = dot * scale;
      }
      float cm = s;
      for (int o = 16; o > 0; o >>= 1) cm = fmaxf(cm, __shfl_xor_sync(0xffffffffu, cm, o));
      const float mn = fmaxf(m[i], cm);
      if (mn == -INFINITY) continue;  // nothing visible yet for this row
      const float pe = s == -INFINITY ? 0.f : expf(s - mn);
      const float alpha = m[i] == -INFINITY ? 0.f : expf(m[i] - mn);
      float ps = pe;
      for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
      l[i] = l[i] * alpha + ps;
      m[i] = mn;
      _Pragma("unroll") for (int c = 0; c < 4; c++) acc[i][c] *= alpha;
      for (int j = 0; j < AK; j++) {
        const float pj = __shfl_sync(0xffffffffu, pe, j);  // all lanes take part
        _Pragma("unroll") for (int c = 0; c < 4; c++) {
          const int d = lane + 32 * c;
          if (d < hd) acc[i][c] += pj * vs[j][d];
        }
      }
    }
  }
  _Pragma("unroll") for (int i = 0; i < 4; i++) {
    const int r = warp * 4 + i;
    if (r >= wk.nrows) break;
    float* o = part + (((long)blockIdx.x * AQ + r) * heads + h) * (hd + 2);
    if (lane == 0) o[0] = m[i], o[1] = l[i];
    _Pragma("unroll") for (int c = 0; c < 4; c++) {
      const int d = lane + 32 * c;
      if (d < hd) o[2 + d] = acc[i][c];
    }
  }
}

// AttnRow tells attn_combine where a query row's partials are: work items
// w0 … w0+nsplit−1 (consecutive, in key order), row ri within each.
struct AttnRow {
  int qrow, w0, nsplit, ri;
};

// attn_combine merges the partials of each row (blockIdx.x) and head
// (blockIdx.y) into out[qrow · heads·hd + h·hd …].
extern "C" __global__ void attn_combine(float* out, const float* part, const AttnRow* rows,
                                        int heads, int hd) {
  const AttnRow rw = rows[blockIdx.x];
  const int h = blockIdx.y;
  const long stride = (long)AQ * heads * (hd + 2);
  const float* p0 = part + (((long)rw.w0 * AQ + rw.ri) * heads + h) * (hd + 2);
  float M = -INFINITY;
  for (int s = 0; s < rw.nsplit; s++) M = fmaxf(M, p0[s * stride]);
  float L = 0.f;
  for (int s = 0; s < rw.nsplit; s++) {
    float ms = p0[s * stride];
    if (ms != -INFINITY) L += p0[s * stride + 1] * expf(ms - M);
  }
  float* o = out + (long)rw.qrow * heads * hd + h * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0.f;
    for (int s = 0; s < rw.nsplit; s++) {
      float ms = p0[s * stride];
      if (ms != -INFINITY) a += p0[s * stride + 2 + d] * expf(ms - M);
    }
    o[d] = a / L;
  }
}
