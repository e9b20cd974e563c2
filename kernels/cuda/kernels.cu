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
#include <mma.h>
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
// GEMM inputs for cuBLAS, KV-cache rows, the tensor-core attention's
// operand terms).
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

// row_argmax returns, to thread 0, the index of r's first value in
// argmax_before's order (0 when every value is -inf).
__device__ int row_argmax(const float* r, int width) {
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
  __syncthreads();  // a previous call's readers are done
  if ((threadIdx.x & 31) == 0) sv[threadIdx.x >> 5] = best, si[threadIdx.x >> 5] = bi;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int i = 1; i < (int)(blockDim.x >> 5); i++)
      if (argmax_before(sv[i], si[i], best, bi)) best = sv[i], bi = si[i];
  return bi == 0x7fffffff ? 0 : bi;
}

// Draw is one row's sampling parameters, kernels.Draw's layout (24 bytes).
// Temperature 0 is greedy.
struct Draw {
  float temperature;
  int32_t top_k;  // 0: off
  float top_p;    // 0 or >= 1: off
  int32_t pad;
  double u;  // where the draw falls, in [0, 1)
};

// ordered_bits maps a float to a uint32 of the same order (-0 just below +0),
// as sample's orderedBits; from_ordered is its inverse.
__device__ __forceinline__ uint32_t ordered_bits(float v) {
  uint32_t b = __float_as_uint(v);
  return (b >> 31) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float from_ordered(uint32_t k) {
  return __uint_as_float((k >> 31) ? (k & 0x7fffffffu) : ~k);
}

// block_sum_d returns the sum of v over the block to every thread, in an
// order fixed by blockDim.x alone (a multiple of 32, at most 1024): each
// lane of warp 0 adds a run of the threads' values, then every thread adds
// the 32 runs in order.
__device__ double block_sum_d(double v) {
  __shared__ double all[1024], runs[32];
  __syncthreads();  // the previous call's readers are done
  all[threadIdx.x] = v;
  __syncthreads();
  int per = blockDim.x >> 5;
  if (threadIdx.x < 32) {
    double s = 0;
    for (int i = 0; i < per; i++) s += all[threadIdx.x * per + i];
    runs[threadIdx.x] = s;
  }
  __syncthreads();
  double s = 0;
  for (int i = 0; i < 32; i++) s += runs[i];
  return s;
}

// pick_row is a row being sampled: its logits over the temperature (NaN as
// -inf, the excluded values), the top-k threshold and its keys. Every
// thread of the block holds the same pick_row.
struct pick_row {
  const float* x;
  int width, id_bits;
  float temperature, threshold;  // threshold: the smallest value kept (-inf: none excluded but -inf)

  __device__ float value(int j) const {
    float v = __fdiv_rn(x[j], temperature);  // as TemperatureLogitsWarper: a division
    return v != v ? -INFINITY : v;
  }
  // kept reports whether j is still a candidate, and its value.
  __device__ bool kept(int j, float* v) const {
    *v = value(j);
    return *v != -INFINITY && *v >= threshold;
  }
  // key orders the candidates by value, then id (top-p's order).
  __device__ unsigned long long key(float v, int j) const {
    return (unsigned long long)ordered_bits(v) << id_bits | (unsigned)j;
  }
};

// first_over returns the smallest key K (of bits bits) for which the sum of
// weight(j) over the candidates j with key(j) <= K exceeds target; all bits
// set when none does. key and weight see a candidate's id and value. One
// block-wide sum per bit.
template <class Key, class Weight>
__device__ unsigned long long first_over(const pick_row& r, int bits, double target, Key key, Weight weight) {
  unsigned long long ans = 0;
  for (int b = bits - 1; b >= 0; b--) {
    unsigned long long probe = ans | ((1ull << b) - 1);
    double s = 0;
    float v;
    for (int j = threadIdx.x; j < r.width; j += blockDim.x)
      if (r.kept(j, &v) && key(j, v) <= probe) s += weight(j, v);
    if (!(block_sum_d(s) > target)) ans |= 1ull << b;
  }
  return ans;
}

// pick writes, for each row of x[m × width], a token id to ids[row]: with
// draws null or a row's temperature 0 the row's argmax (argmax_before's
// order); otherwise sample.Picker's rule at the row's Draw — the logits over
// the temperature, NaN and -inf excluded (every one excluded: the argmax of
// the raw row), the top-k largest kept (ties with the k-th all kept),
// weights exp(v - max) (the maximum weighs 1), top-p keeping the smallest
// set of most likely candidates whose probability reaches top_p (in
// ascending order of value, then id, the prefix whose cumulative weight is
// at most (1 - top_p) of the total dropped, never the last), and the draw:
// the first candidate, in id order (value order once top-p cut), whose
// cumulative weight exceeds u times the total (the last when rounding leaves
// none). Searches are bitwise bisections over block-wide float64 sums in a
// fixed order, so a row's token depends on its logits and Draw alone.
extern "C" __global__ void pick(int32_t* ids, const float* x, int width, const Draw* draws) {
  const float* xr = x + (long)blockIdx.x * width;
  if (draws == nullptr || draws[blockIdx.x].temperature == 0.f) {
    int id = row_argmax(xr, width);
    if (threadIdx.x == 0) ids[blockIdx.x] = id;
    return;
  }
  const Draw d = draws[blockIdx.x];
  pick_row r{xr, width, 1, d.temperature, -INFINITY};
  while ((1 << r.id_bits) < width) r.id_bits++;

  // The candidates: count, and the largest value.
  float mx = -INFINITY;
  double n = 0;
  for (int j = threadIdx.x; j < width; j += blockDim.x) {
    float v = r.value(j);
    if (v != -INFINITY) n += 1, mx = fmaxf(mx, v);
  }
  n = block_sum_d(n);
  mx = block_max(mx);
  if (n == 0) {  // every logit excluded
    int id = row_argmax(xr, width);
    if (threadIdx.x == 0) ids[blockIdx.x] = id;
    return;
  }
  auto one = [](int, float) { return 1.0; };
  auto byValue = [](int, float v) { return (unsigned long long)ordered_bits(v); };
  if (d.top_k > 0 && d.top_k < n) {
    // The k-th largest value: the (n - k + 1)-th smallest key.
    r.threshold = from_ordered((uint32_t)first_over(r, 32, n - d.top_k, byValue, one));
  }
  auto weight = [mx](int, float v) { return v == mx ? 1.0 : (double)expf(v - mx); };
  auto byId = [](int j, float) { return (unsigned long long)j; };
  auto byKey = [&r](int j, float v) { return r.key(v, j); };
  double total = 0, kn = 0;  // the kept candidates' weight and number
  float v;
  for (int j = threadIdx.x; j < width; j += blockDim.x)
    if (r.kept(j, &v)) total += weight(j, v), kn += 1;
  total = block_sum_d(total);
  kn = block_sum_d(kn);

  unsigned long long tok;
  if (d.top_p > 0.f && d.top_p < 1.f) {
    int bits = 32 + r.id_bits;
    unsigned long long cut = first_over(r, bits, (1.0 - (double)d.top_p) * total, byKey, weight);
    if (cut >> bits)  // none exceeds the limit (rounding): keep the most likely alone
      cut = first_over(r, bits, kn - 1, byKey, one);
    auto above = [&r, cut, weight](int j, float v) { return r.key(v, j) >= cut ? weight(j, v) : 0.0; };
    double kept = 0;
    for (int j = threadIdx.x; j < width; j += blockDim.x)
      if (r.kept(j, &v)) kept += above(j, v);
    kept = block_sum_d(kept);
    // The dropped keys weigh nothing: the walk starts at cut.
    tok = first_over(r, bits, d.u * kept, byKey, above);
    if (tok >> bits) tok = first_over(r, bits, kn - 1, byKey, one);  // the last, the most likely
    tok &= (1ull << r.id_bits) - 1;
  } else {
    tok = first_over(r, r.id_bits, d.u * total, byId, weight);
    if (tok >> r.id_bits) tok = first_over(r, r.id_bits, kn - 1, byId, one);  // the last candidate
  }
  if (threadIdx.x == 0) ids[blockIdx.x] = (int32_t)tok;
}

// ---------------------------------------------------------------------------
// KV cache and attention (kernels/cuda/attention.go drives them; the
// derivations are in docs/cuda.md, "Attention kernels").
//
// The KV cache is stored as float32, bfloat16 or float16 (DT_*). store_as
// is the one place a key or value is rounded into it (to nearest, ties to
// even: rope_store, store_rows); load_cache the one place it is widened
// back (exactly).

__device__ __forceinline__ float widen(float x) { return x; }
__device__ __forceinline__ float widen(__half x) { return __half2float(x); }
__device__ __forceinline__ float widen(__nv_bfloat16 x) { return __bfloat162float(x); }

// load_cache widens the N elements c[i … i+N) into f: one 16-byte load
// (ld.global.nc.v4) when N elements are 16 bytes (i a multiple of N), else
// N scalar loads.
template <class KV, int N>
__device__ __forceinline__ void load_cache(float (&f)[N], const KV* c, long i) {
  if constexpr (N * sizeof(KV) == 16) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(c + i));
    KV e[N];
    memcpy(e, &u, 16);  // not a pointer cast: no aliasing of u
    _Pragma("unroll") for (int j = 0; j < N; j++) f[j] = widen(e[j]);
  } else {
    _Pragma("unroll") for (int j = 0; j < N; j++) f[j] = widen(c[i + j]);
  }
}

// store_rows writes row i of src into row rows[i] of a cache of dtype dt
// (the KV write of a layer); one block per row.
extern "C" __global__ void store_rows(void* cache, int dt, const float* src, const int32_t* rows,
                                      int width) {
  const long r = rows[blockIdx.x];
  for (int j = threadIdx.x; j < width; j += blockDim.x)
    store_as(cache, dt, r * width + j, src[(long)blockIdx.x * width + j]);
}

// Attention in the style of paged attention v2 (split-K, "flash
// decoding"): a block of AT threads owns one head of one work item — up to
// AR query rows of one sequence and one key partition [k0, k1) — and
// computes every row's scores over the partition into shared memory, the
// partition's max and sum, and the unnormalised output. A row whose keys
// fit one partition is written out directly; the others leave a partial
// (max, sum, output) that attn_combine merges in partition order.
//
// Bitwise rules (attention.go plans by them): a partition's size depends
// only on the row's own key count (and constants: heads, block size, the
// device's multiprocessor count); every row's arithmetic is the same code
// whatever the other rows of its work item (keys it must not see score
// −inf, so they add exact zeros), so a row's result depends neither on the
// batch nor on how its sequence was chunked, and a decode row equals the
// same row inside a prefill.

#define AR 8          // query rows per work item
#define AT 128        // threads per block
#define AW (AT / 32)  // warps per block
#define APMAX 256     // longest key partition
#define MAXHD 128     // largest head dimension

// AttnSeq describes one sequence: its query rows [row, row+rows) sit at
// positions pos, pos+1, …; keys come from the paged cache through
// blocks[blk_off…] (blk_off ≥ 0) or from dense rows key_base+p (blk_off < 0).
// A causal row at position P sees keys 0…P; a non-causal one sees nkeys.
struct AttnSeq {
  int row, rows, pos, nkeys, blk_off, key_base;
};

// AttnWork is one work item: a sequence, its first query row (absolute)
// and row count, the key range [k0, k1), and the partition size of its
// rows (k0 is a multiple of it).
struct AttnWork {
  int seq, row0, nrows, k0, k1, part;
};

__device__ constexpr int cmin(int a, int b) { return a < b ? a : b; }

// attn_softmax turns the scores lg[r][0…n) of rows r < nr into exp(s − max)
// in place and leaves each row's max in ms and sum in ls: block reductions
// in a fixed tree (keys tid, tid+AT, … per thread, then lanes, then warps
// in order), so a row's values depend on its own scores alone. Scores of
// −∞ (keys a row must not see) give exact zeros.
__device__ __forceinline__ void attn_softmax(float (*lg)[APMAX], float (*red)[AW], float* ms, float* ls,
                                             int n, int nr) {
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  _Pragma("unroll") for (int r = 0; r < AR; r++) {
    if (r >= nr) break;
    float x = -INFINITY;
    for (int k = tid; k < n; k += AT) x = fmaxf(x, lg[r][k]);
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    if (lane == 0) red[r][warp] = x;
  }
  __syncthreads();
  if (tid < nr) {
    float x = red[tid][0];
    for (int w = 1; w < AW; w++) x = fmaxf(x, red[tid][w]);
    ms[tid] = x;
  }
  __syncthreads();
  _Pragma("unroll") for (int r = 0; r < AR; r++) {
    if (r >= nr) break;
    const float m = ms[r];
    float s = 0.f;
    for (int k = tid; k < n; k += AT) {
      const float e = lg[r][k] == -INFINITY ? 0.f : expf(lg[r][k] - m);
      lg[r][k] = e;
      s += e;
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) red[r][warp] = s;
  }
  __syncthreads();
  if (tid < nr) {
    float s = red[tid][0];
    for (int w = 1; w < AW; w++) s += red[tid][w];
    ls[tid] = s;
  }
}

// attn_finish sums the warps' outputs accs[w·AR·ld + r·ld + d] in warp
// order and writes each row r < wk.nrows that sees a key of the work item's
// partition: normalised to out when the row has one partition, else as the
// partial (max, sum, output) of the work item. A row sees keys
// [0, qpos0 + r + 1) (nkeys < 0: causal) or [0, nkeys).
__device__ __forceinline__ void attn_finish(float* out, float* part, const float* accs, int ld,
                                            const float* ms, const float* ls, const AttnWork& wk, int hd,
                                            int heads, int qpos0, int nkeys) {
  const int width = heads * hd, h = blockIdx.y;
  for (int i = threadIdx.x; i < wk.nrows * hd; i += AT) {
    const int r = i / hd, d = i % hd, L = nkeys < 0 ? qpos0 + r + 1 : nkeys;
    if (wk.k0 >= L) continue;  // the row sees no key of this partition
    float o = accs[r * ld + d];
    for (int w = 1; w < AW; w++) o += accs[(w * AR + r) * ld + d];
    if (L <= wk.part) {
      out[(long)(wk.row0 + r) * width + (long)h * hd + d] = o / ls[r];
    } else {
      float* pp = part + (((long)blockIdx.x * AR + r) * heads + h) * (hd + 2);
      if (d == 0) pp[0] = ms[r], pp[1] = ls[r];
      pp[2 + d] = o;
    }
  }
}

// attn_paged is the body of the attn_* kernels: KV is the cache's element
// type; HD and BS the head dimension and block size as compile-time
// constants (16-byte loads of keys and values), or 0 for the generic
// kernel (hd_, bs_ at run time, scalar loads). It writes, for every row r
// of its work item and head h, the output (single partition) or the
// partial (max, sum, output[hd]) at
// part[((blockIdx.x·AR + r) · heads + h) · (hd + 2)].
template <class KV, int HD, int BS>
__device__ __forceinline__ void attn_paged(float* out, float* part, const float* q, const KV* kc,
                                           const KV* vc, const AttnSeq* seqs, const AttnWork* work,
                                           const int32_t* blocks, int heads, int hd_, int bs_,
                                           int causal, float scale) {
  // Scores: G lanes per key, each holding NL 16-byte vectors of it; a warp
  // takes KPW keys per step (one KV block where BS ≤ 32).
  constexpr int VEC = HD ? 16 / (int)sizeof(KV) : 1;
  constexpr int NV = HD ? HD / VEC : 0;
  constexpr int G = HD ? cmin(NV, BS && BS <= 32 ? 32 / BS : 4) : 4;
  constexpr int KPW = 32 / G, NL = HD ? NV / G : 0;
  // Output: LPR lanes per value row (one vector each), KS keys at a time.
  constexpr int LPR = HD ? cmin(NV, 32) : 32, KS = 32 / LPR, VPL = HD ? VEC : MAXHD / 32;
  static_assert(HD == 0 || (HD % VEC == 0 && NV % G == 0 && NV <= 32 && HD <= MAXHD), "head dim");
  static_assert(32 % G == 0 && KPW % KS == 0, "lane layout");

  __shared__ float qs[AR][MAXHD];
  __shared__ float lg[AR][APMAX];  // scores, then probabilities
  __shared__ float red[AR][AW];
  __shared__ float ms[AR], ls[AR];
  __shared__ float accs[AW][AR][MAXHD];

  const AttnWork wk = work[blockIdx.x];
  const AttnSeq sq = seqs[wk.seq];
  const int hd = HD ? HD : hd_, bs = BS ? BS : bs_;
  const int h = blockIdx.y, width = heads * hd, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int n = wk.k1 - wk.k0, nr = wk.nrows;
  const long hoff = (long)h * hd;
  const int qpos0 = sq.pos + (wk.row0 - sq.row);
  auto keys = [&](int r) { return causal ? qpos0 + r + 1 : sq.nkeys; };  // keys [0, keys) visible to row r
  auto krow = [&](int p) -> long {  // cache row of position p
    return sq.blk_off >= 0 ? (long)blocks[sq.blk_off + p / bs] * bs + p % bs : (long)sq.key_base + p;
  };

  for (int i = tid; i < AR * hd; i += AT) {
    int r = i / hd, d = i % hd;
    qs[r][d] = r < nr ? q[(long)(wk.row0 + r) * width + hoff + d] : 0.f;
  }
  __syncthreads();

  // Scores.
  {
    const int grp = lane / G, gl = lane % G;
    for (int kb = warp * KPW; kb < n; kb += AW * KPW) {
      const int j = kb + grp;
      const bool ok = j < n;
      float dot[AR];
      if constexpr (HD > 0) {
        float kf[NL > 0 ? NL : 1][VEC];
        const long base = ok ? krow(wk.k0 + j) * width + hoff : 0;
        _Pragma("unroll") for (int i = 0; i < NL; i++) {
          if (ok)
            load_cache(kf[i], kc, base + (i * G + gl) * VEC);
          else
            _Pragma("unroll") for (int e = 0; e < VEC; e++) kf[i][e] = 0.f;
        }
        _Pragma("unroll") for (int r = 0; r < AR; r++) {
          float s = 0.f;
          if (r < nr)
            _Pragma("unroll") for (int i = 0; i < NL; i++)
              _Pragma("unroll") for (int e = 0; e < VEC; e++)
                s = fmaf(qs[r][(i * G + gl) * VEC + e], kf[i][e], s);
          dot[r] = s;
        }
      } else {
        const long base = ok ? krow(wk.k0 + j) * width + hoff : 0;
        _Pragma("unroll") for (int r = 0; r < AR; r++) dot[r] = 0.f;
        for (int d = gl; d < hd; d += G) {
          const float kv = ok ? widen(kc[base + d]) : 0.f;
          _Pragma("unroll") for (int r = 0; r < AR; r++) dot[r] = fmaf(qs[r][d], kv, dot[r]);
        }
      }
      _Pragma("unroll") for (int r = 0; r < AR; r++) {
        if (r >= nr) break;
        float s = dot[r];
        _Pragma("unroll") for (int o = G / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (gl == 0 && ok) lg[r][j] = wk.k0 + j < keys(r) ? s * scale : -INFINITY;
      }
    }
  }
  __syncthreads();

  attn_softmax(lg, red, ms, ls, n, nr);

  // Output: Σ p·v over the warp's keys, the KS key lanes merged by a
  // shuffle tree, the warps in order.
  float acc[AR][VPL];
  _Pragma("unroll") for (int r = 0; r < AR; r++) _Pragma("unroll") for (int c = 0; c < VPL; c++) acc[r][c] = 0.f;
  const int vi = lane % LPR, ks = lane / LPR;
  for (int kb = warp * KPW; kb < n; kb += AW * KPW) {
    if constexpr (HD > 0) {
      constexpr int NJ = KPW / KS;
      float vf[NJ][VEC];
      _Pragma("unroll") for (int jj = 0; jj < NJ; jj++) {
        const int j = kb + ks + jj * KS;
        if (j < n)
          load_cache(vf[jj], vc, krow(wk.k0 + j) * width + hoff + vi * VEC);
        else
          _Pragma("unroll") for (int e = 0; e < VEC; e++) vf[jj][e] = 0.f;
      }
      _Pragma("unroll") for (int jj = 0; jj < NJ; jj++) {
        const int j = kb + ks + jj * KS;
        if (j >= n) break;
        _Pragma("unroll") for (int r = 0; r < AR; r++) {
          if (r >= nr) break;
          const float p = lg[r][j];
          _Pragma("unroll") for (int e = 0; e < VEC; e++) acc[r][e] = fmaf(p, vf[jj][e], acc[r][e]);
        }
      }
    } else {
      for (int j = kb; j < kb + KPW && j < n; j++) {
        const long base = krow(wk.k0 + j) * width + hoff;
        _Pragma("unroll") for (int c = 0; c < VPL; c++) {
          const int d = lane + 32 * c;
          const float v = d < hd ? widen(vc[base + d]) : 0.f;
          _Pragma("unroll") for (int r = 0; r < AR; r++) acc[r][c] = fmaf(lg[r][j], v, acc[r][c]);
        }
      }
    }
  }
  _Pragma("unroll") for (int r = 0; r < AR; r++) {
    if (r >= nr) break;
    _Pragma("unroll") for (int c = 0; c < VPL; c++) {
      float a = acc[r][c];
      for (int o = LPR; o < 32; o <<= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
      const int d = HD ? vi * VEC + c : lane + 32 * c;
      if (ks == 0 && d < hd) accs[warp][r][d] = a;
    }
  }
  __syncthreads();
  attn_finish(out, part, &accs[0][0][0], MAXHD, ms, ls, wk, hd, heads, qpos0, causal ? -1 : sq.nkeys);
}

// attn_split stores x as NS terms t[0], t[stride], … of the 16-bit cache
// type DT whose sum is x to 8·NS (bfloat16) or 11·NS (float16) significant
// bits: t_i = round(x − Σ_{j<i} t_j), each rounded by store_as. Tensor
// cores multiply 16-bit operands; split, Q and P lose nothing the float32
// reference would notice.
template <class KV, int DT, int NS>
__device__ __forceinline__ void attn_split(KV* t, int stride, float x) {
  _Pragma("unroll") for (int i = 0; i < NS; i++) {
    store_as(t, DT, (long)i * stride, x);
    x -= widen(t[i * stride]);
  }
}

// attn_stage copies the 16 key or value rows of the KV block holding
// partition keys [jb, jb+16) of head hoff into st[16][HD] with 16-byte
// loads (one warp; rows at or past n are zeros).
template <class KV, int HD>
__device__ __forceinline__ void attn_stage(KV (*st)[HD], const KV* c, long row0, int width, long hoff, int jb,
                                           int n) {
  constexpr int NV = HD * (int)sizeof(KV) / 16;  // 16-byte vectors per row
  const int lane = threadIdx.x & 31;
  uint4 v[16 * NV / 32];
  _Pragma("unroll") for (int i = 0; i < 16 * NV / 32; i++) {
    const int e = lane + 32 * i, k = e / NV;
    v[i] = jb + k < n ? __ldg(reinterpret_cast<const uint4*>(c + (row0 + k) * width + hoff) + e % NV)
                      : uint4{0, 0, 0, 0};
  }
  _Pragma("unroll") for (int i = 0; i < 16 * NV / 32; i++) {
    const int e = lane + 32 * i;
    reinterpret_cast<uint4*>(&st[e / NV][0])[e % NV] = v[i];
  }
}

// attn_paged_tc is attn_paged on tensor cores for a 16-bit cache (KV, DT),
// head dimension HD and block size 16: Q and the probabilities split into NS
// 16-bit terms (attn_split), 16×16×16 MMAs with float32 accumulation in a
// fixed order, keys and values staged through shared memory a KV block at a
// time with 16-byte loads. A row's products and sums involve its own Q and
// P row only (rows are independent in an MMA), so the bitwise rules of
// attn_paged hold: every row of such a cache runs here, decode or prefill.
template <class KV, int DT, int HD, int NS>
__device__ __forceinline__ void attn_paged_tc(float* out, float* part, const float* q, const KV* kc,
                                              const KV* vc, const AttnSeq* seqs, const AttnWork* work,
                                              const int32_t* blocks, int heads, int causal,
                                              float scale) {
  using namespace nvcuda;
  constexpr int BS = 16, NT = HD / 16;  // key block, head-dimension tiles
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, KV, wmma::row_major>;
  using FragKT = wmma::fragment<wmma::matrix_b, 16, 16, 16, KV, wmma::col_major>;
  using FragV = wmma::fragment<wmma::matrix_b, 16, 16, 16, KV, wmma::row_major>;
  using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

  __shared__ float lg[AR][APMAX];
  __shared__ float red[AR][AW];
  __shared__ float ms[AR], ls[AR];
  // 32-byte alignment: wmma's loads and stores, and 16-byte stores.
  __shared__ __align__(32) union {
    KV q[NS][16][HD];        // Q's terms (rows ≥ nrows zero), while scoring
    float acc[AW][AR][HD];   // the warps' outputs, at the end
  } u;
  __shared__ __align__(32) union {
    KV kv[16][HD];           // a staged key or value block
    float s[16][16];         // a score or output tile
  } st[AW];
  __shared__ __align__(32) KV ps[AW][NS][16][16];  // a block's probabilities, split

  const AttnWork wk = work[blockIdx.x];
  const AttnSeq sq = seqs[wk.seq];
  const int h = blockIdx.y, width = heads * HD, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int n = wk.k1 - wk.k0, nr = wk.nrows;
  const long hoff = (long)h * HD;
  const int qpos0 = sq.pos + (wk.row0 - sq.row);
  auto krow = [&](int p) -> long {  // cache row of position p (p a multiple of 16: a block's first)
    return sq.blk_off >= 0 ? (long)blocks[sq.blk_off + p / BS] * BS : (long)sq.key_base + p;
  };

  for (int i = tid; i < 16 * HD; i += AT) {
    const int r = i / HD, d = i % HD;
    attn_split<KV, DT, NS>(&u.q[0][r][d], 16 * HD, r < nr ? q[(long)(wk.row0 + r) * width + hoff + d] : 0.f);
  }
  __syncthreads();

  // Scores: S = Σ_t Q_t · Kᵀ over the head dimension's tiles, a key block
  // per warp step.
  for (int jb = warp * BS; jb < n; jb += AW * BS) {
    attn_stage<KV, HD>(st[warp].kv, kc, krow(wk.k0 + jb), width, hoff, jb, n);
    __syncwarp();
    FragC sc;
    wmma::fill_fragment(sc, 0.f);
    _Pragma("unroll") for (int t = 0; t < NT; t++) {
      FragKT kt;
      wmma::load_matrix_sync(kt, &st[warp].kv[0][t * 16], HD);
      _Pragma("unroll") for (int i = 0; i < NS; i++) {
        FragA a;
        wmma::load_matrix_sync(a, &u.q[i][0][t * 16], HD);
        wmma::mma_sync(sc, a, kt, sc);
      }
    }
    __syncwarp();
    wmma::store_matrix_sync(&st[warp].s[0][0], sc, 16, wmma::mem_row_major);
    __syncwarp();
    for (int i = lane; i < AR * 16; i += 32) {
      const int r = i / 16, j = jb + i % 16;
      if (r < nr && j < n) lg[r][j] = wk.k0 + j < (causal ? qpos0 + r + 1 : sq.nkeys) ? st[warp].s[r][i % 16] * scale : -INFINITY;
    }
    __syncwarp();
  }
  __syncthreads();

  attn_softmax(lg, red, ms, ls, n, nr);

  // Output: O += Σ_t P_t · V per key block, per head-dimension tile.
  FragC o[NT];
  _Pragma("unroll") for (int t = 0; t < NT; t++) wmma::fill_fragment(o[t], 0.f);
  for (int jb = warp * BS; jb < n; jb += AW * BS) {
    attn_stage<KV, HD>(st[warp].kv, vc, krow(wk.k0 + jb), width, hoff, jb, n);
    for (int i = lane; i < 16 * 16; i += 32) {
      const int r = i / 16, j = jb + i % 16;
      attn_split<KV, DT, NS>(&ps[warp][0][r][i % 16], 16 * 16, r < nr && j < n ? lg[r][j] : 0.f);
    }
    __syncwarp();
    FragA pa[NS];
    _Pragma("unroll") for (int i = 0; i < NS; i++) wmma::load_matrix_sync(pa[i], &ps[warp][i][0][0], 16);
    _Pragma("unroll") for (int t = 0; t < NT; t++) {
      FragV vb;
      wmma::load_matrix_sync(vb, &st[warp].kv[0][t * 16], HD);
      _Pragma("unroll") for (int i = 0; i < NS; i++) wmma::mma_sync(o[t], pa[i], vb, o[t]);
    }
    __syncwarp();
  }
  _Pragma("unroll") for (int t = 0; t < NT; t++) {
    wmma::store_matrix_sync(&st[warp].s[0][0], o[t], 16, wmma::mem_row_major);
    __syncwarp();
    for (int i = lane; i < AR * 16; i += 32) u.acc[warp][i / 16][t * 16 + i % 16] = st[warp].s[i / 16][i % 16];
    __syncwarp();
  }
  __syncthreads();
  attn_finish(out, part, &u.acc[0][0][0], HD, ms, ls, wk, HD, heads, qpos0, causal ? -1 : sq.nkeys);
}

// The attention kernels: one per cache type and (head dimension, block
// size) of the presets — 128/16 is LLaMA-2-13B with the default block
// size, 64/16 the bench preset, the embedded model and CLIP, 16/16 and 16/8
// the tiny golden checkpoints — and a generic one per cache type. A 16-bit
// cache with head dimension 128 or 64 and block size 16 runs on tensor
// cores (attn_paged_tc; bfloat16 splits operands in 3 terms, float16 in 2),
// everything else on CUDA cores.
#define ATTN_PARAMS(KV)                                                                          \
  float *out, float *part, const float *q, const KV *kc, const KV *vc, const AttnSeq *seqs,      \
      const AttnWork *work, const int32_t *blocks, int heads, int hd, int bs, int causal,        \
      float scale
#define ATTN_KERNEL(name, KV, HD, BS)                                                            \
  extern "C" __global__ void __launch_bounds__(AT)                                             \
      name(ATTN_PARAMS(KV)) {                                                                    \
    attn_paged<KV, HD, BS>(out, part, q, kc, vc, seqs, work, blocks, heads, hd, bs, causal,      \
                           scale);                                                               \
  }
#define ATTN_TC_KERNEL(name, KV, DT, HD, NS)                                                     \
  extern "C" __global__ void __launch_bounds__(AT)                                             \
      name(ATTN_PARAMS(KV)) {                                                                    \
    attn_paged_tc<KV, DT, HD, NS>(out, part, q, kc, vc, seqs, work, blocks, heads, causal,       \
                                  scale);                                                        \
  }
ATTN_KERNEL(attn_f32_128_16, float, 128, 16)
ATTN_KERNEL(attn_f32_64_16, float, 64, 16)
ATTN_KERNEL(attn_f32_16_16, float, 16, 16)
ATTN_KERNEL(attn_f32_16_8, float, 16, 8)
ATTN_KERNEL(attn_f32_any, float, 0, 0)
ATTN_TC_KERNEL(attn_bf16_128_16, __nv_bfloat16, DT_BF16, 128, 3)
ATTN_TC_KERNEL(attn_bf16_64_16, __nv_bfloat16, DT_BF16, 64, 3)
ATTN_KERNEL(attn_bf16_16_16, __nv_bfloat16, 16, 16)
ATTN_KERNEL(attn_bf16_16_8, __nv_bfloat16, 16, 8)
ATTN_KERNEL(attn_bf16_any, __nv_bfloat16, 0, 0)
ATTN_TC_KERNEL(attn_f16_128_16, __half, DT_F16, 128, 2)
ATTN_TC_KERNEL(attn_f16_64_16, __half, DT_F16, 64, 2)
ATTN_KERNEL(attn_f16_16_16, __half, 16, 16)
ATTN_KERNEL(attn_f16_16_8, __half, 16, 8)
ATTN_KERNEL(attn_f16_any, __half, 0, 0)

// AttnRow tells attn_combine where the partials of a query row with
// several partitions are: work items w0 … w0+nsplit−1 (consecutive, in key
// order), row ri within each.
struct AttnRow {
  int qrow, w0, nsplit, ri;
};

// attn_combine merges the partials of each listed row (blockIdx.x) and head
// (blockIdx.y) into out[qrow · heads·hd + h·hd …], in partition order.
extern "C" __global__ void attn_combine(float* out, const float* part, const AttnRow* rows,
                                        int heads, int hd) {
  const AttnRow rw = rows[blockIdx.x];
  const int h = blockIdx.y;
  const long stride = (long)AR * heads * (hd + 2);
  const float* p0 = part + (((long)rw.w0 * AR + rw.ri) * heads + h) * (hd + 2);
  float M = -INFINITY;
  for (int s = 0; s < rw.nsplit; s++) M = fmaxf(M, p0[s * stride]);
  float L = 0.f;
  for (int s = 0; s < rw.nsplit; s++) L += p0[s * stride + 1] * expf(p0[s * stride] - M);
  float* o = out + (long)rw.qrow * heads * hd + h * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float a = 0.f;
    for (int s = 0; s < rw.nsplit; s++) a += p0[s * stride + 2 + d] * expf(p0[s * stride] - M);
    o[d] = a / L;
  }
}
