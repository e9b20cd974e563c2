// emu_test.cpp — runs kernels/cuda/kernels.cu on the CPU emulation of emu.h
// and checks each kernel against a double-precision reference. This tests
// the kernels' logic (indexing, reductions, masking, split-K merging, batch
// invariance) where no GPU is available; it says nothing about speed or
// about behaviour only real hardware has. Run by tools/cuda/emu/run.sh.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "../../../kernels/cuda/kernels.cu"

static int failures = 0;
static std::mt19937_64 rng(42);

static std::vector<float> randv(size_t n) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto &x : v) x = d(rng);
  return v;
}

// check compares got with want within tol · max(1, max|want|).
static void check(const char *name, const float *got, const std::vector<double> &want, double tol) {
  double scale = 1;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); i++) {
    double d = std::fabs(got[i] - want[i]);
    if (!(d <= tol * scale)) {
      printf("FAIL %s: [%zu] = %g, want %g (|d| %g > %g)\n", name, i, got[i], want[i], d, tol * scale);
      failures++;
      return;
    }
  }
  printf("ok   %s\n", name);
}

static void expect(bool ok, const char *what) {
  printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) failures++;
}

// Weights stored as the Go side stores them: raw bytes plus a dtype code.
struct W {
  std::vector<uint16_t> h;
  std::vector<float> f;
  std::vector<double> exact;
  int dt;
  const void *p() const { return dt == DT_F32 ? (const void *)f.data() : (const void *)h.data(); }
};
static W makeW(int dt, const std::vector<float> &v) {
  W w;
  w.dt = dt;
  for (float x : v) {
    if (dt == DT_F32) {
      w.f.push_back(x);
      w.exact.push_back(x);
    } else if (dt == DT_BF16) {
      __nv_bfloat16 b = __float2bfloat16_rn(x);
      w.h.push_back(b.x);
      w.exact.push_back(__bfloat162float(b));
    } else {
      __half b = __float2half_rn(x);
      w.h.push_back(b.x);
      w.exact.push_back(__half2float(b));
    }
  }
  return w;
}

static void testGemm() {
  int m = 5, n = 33, k = 37;
  for (int dt : {DT_F32, DT_BF16, DT_F16}) {
    auto x = randv(m * k);
    W w = makeW(dt, randv(n * k)), bias = makeW(DT_F32, randv(n));
    std::vector<float> out(m * n);
    emu_launch(dim3{(unsigned)((n + 15) / 16), (unsigned)((m + 15) / 16), 1}, dim3{16, 16, 1},
               [&] { gemm_ref(out.data(), x.data(), w.p(), dt, bias.p(), DT_F32, m, n, k); });
    std::vector<double> want(m * n);
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        double s = bias.exact[j];
        for (int p = 0; p < k; p++) s += (double)x[i * k + p] * w.exact[j * k + p];
        want[i * n + j] = s;
      }
    check(("gemm_ref dt=" + std::to_string(dt)).c_str(), out.data(), want, 2e-5 * std::sqrt(k));
    std::vector<float> one(n);
    emu_launch(dim3{(unsigned)((n + 15) / 16), 1, 1}, dim3{16, 16, 1},
               [&] { gemm_ref(one.data(), x.data() + 3 * k, w.p(), dt, bias.p(), DT_F32, 1, n, k); });
    expect(memcmp(one.data(), out.data() + 3 * n, 4 * n) == 0, "gemm_ref row alone == batched (bitwise)");
  }
}

static void testNorms() {
  int m = 3, width = 300;
  auto x = randv(m * width), add = randv(m * width);
  W w = makeW(DT_BF16, randv(width)), b = makeW(DT_F32, randv(width));
  std::vector<float> out(m * width), xs = x;
  std::vector<uint16_t> hout(m * width);
  emu_launch(dim3{(unsigned)m, 1, 1}, dim3{256, 1, 1},
             [&] { rmsnorm(out.data(), xs.data(), add.data(), w.p(), w.dt, width, 1e-5f, hout.data(), DT_F16); });
  std::vector<double> want(m * width), resid(m * width);
  for (int i = 0; i < m; i++) {
    double ss = 0;
    for (int j = 0; j < width; j++) {
      resid[i * width + j] = (double)x[i * width + j] + add[i * width + j];
      ss += resid[i * width + j] * resid[i * width + j];
    }
    double r = 1 / std::sqrt(ss / width + 1e-5);
    for (int j = 0; j < width; j++) want[i * width + j] = resid[i * width + j] * r * w.exact[j];
  }
  check("rmsnorm fused residual (x += add)", xs.data(), resid, 1e-6);
  check("rmsnorm fused", out.data(), want, 2e-5);
  bool same = true;
  for (int i = 0; i < m * width; i++) same &= hout[i] == __float2half_rn(out[i]).x;
  expect(same, "rmsnorm's 16-bit copy of out");

  for (auto &v : x) v += 3;
  emu_launch(dim3{(unsigned)m, 1, 1}, dim3{256, 1, 1},
             [&] { layernorm(out.data(), x.data(), w.p(), w.dt, b.p(), b.dt, width, 1e-5f); });
  for (int i = 0; i < m; i++) {
    double mean = 0, vs = 0;
    for (int j = 0; j < width; j++) mean += x[i * width + j];
    mean /= width;
    for (int j = 0; j < width; j++) vs += (x[i * width + j] - mean) * (x[i * width + j] - mean);
    double r = 1 / std::sqrt(vs / width + 1e-5);
    for (int j = 0; j < width; j++) want[i * width + j] = (x[i * width + j] - mean) * r * w.exact[j] + b.exact[j];
  }
  check("layernorm (bf16 weight, f32 bias)", out.data(), want, 2e-5);

  auto s = randv(m * width);
  auto s0 = s;
  emu_launch(dim3{(unsigned)m, 1, 1}, dim3{256, 1, 1}, [&] { softmax(s.data(), width); });
  for (int i = 0; i < m; i++) {
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < width; j++) mx = std::max(mx, (double)s0[i * width + j]);
    for (int j = 0; j < width; j++) sum += std::exp(s0[i * width + j] - mx);
    for (int j = 0; j < width; j++) want[i * width + j] = std::exp(s0[i * width + j] - mx) / sum;
  }
  check("softmax", s.data(), want, 5e-5);

  auto lg = randv(2 * 1000);
  lg[417] = 50;
  lg[1000 + 999] = lg[1000 + 3] = 60;
  int32_t ids[2];
  emu_launch(dim3{2, 1, 1}, dim3{256, 1, 1}, [&] { pick(ids, lg.data(), 1000, nullptr); });
  expect(ids[0] == 417 && ids[1] == 3, "pick, greedy (ties to the lowest index)");
  lg[1000 + 700] = NAN;
  lg[1000 + 900] = NAN;
  std::fill(lg.begin(), lg.begin() + 1000, -INFINITY);
  emu_launch(dim3{2, 1, 1}, dim3{256, 1, 1}, [&] { pick(ids, lg.data(), 1000, nullptr); });
  expect(ids[0] == 0 && ids[1] == 700, "pick, greedy (all -inf: 0; the first NaN wins, as sample.Argmax)");
}

// refPick is sample.Picker's rule in float64, written plainly (sorts, no
// bisection): the token for row x at d, and in *margin the distance of the
// draw's target and of the top-p limit to the nearest cumulative weight, as
// a fraction of the total (a draw that close to a boundary may fall either
// way under a different summation order).
static int refPick(const float *x, int w, const Draw &d, double *margin) {
  *margin = 1;
  auto argmaxRaw = [&] {
    int bi = 0;
    for (int j = 0; j < w; j++) {
      if (x[j] != x[j]) return j;
      if (x[j] > x[bi]) bi = j;
    }
    return bi;
  };
  if (d.temperature == 0) return argmaxRaw();
  std::vector<float> v(w);
  std::vector<int> cand;
  for (int j = 0; j < w; j++) {
    v[j] = x[j] / d.temperature;
    if (v[j] != v[j]) v[j] = -INFINITY;
    if (v[j] != -INFINITY) cand.push_back(j);
  }
  if (cand.empty()) return argmaxRaw();
  if (d.top_k > 0 && d.top_k < (int)cand.size()) {
    std::vector<float> s;
    for (int j : cand) s.push_back(v[j]);
    std::sort(s.begin(), s.end(), std::greater<float>());
    float thr = s[d.top_k - 1];
    std::vector<int> kept;
    for (int j : cand)
      if (v[j] >= thr) kept.push_back(j);
    cand = kept;
  }
  float mx = -INFINITY;
  for (int j : cand) mx = std::max(mx, v[j]);
  std::vector<double> wt(w);
  double total = 0;
  for (int j : cand) total += wt[j] = v[j] == mx ? 1.0 : (double)expf(v[j] - mx);
  if (d.top_p > 0 && d.top_p < 1) {
    std::sort(cand.begin(), cand.end(), [&](int a, int b) { return v[a] < v[b] || (v[a] == v[b] && a < b); });
    double limit = (1 - (double)d.top_p) * total, cum = 0;
    size_t cut = 0;
    for (; cut + 1 < cand.size(); cut++) {
      *margin = std::min(*margin, std::fabs(cum + wt[cand[cut]] - limit) / total);
      if (cum + wt[cand[cut]] > limit) break;
      cum += wt[cand[cut]];
    }
    cand.erase(cand.begin(), cand.begin() + cut);
    total = 0;
    for (int j : cand) total += wt[j];
  }
  double target = d.u * total, cum = 0;
  for (int j : cand) {
    cum += wt[j];
    *margin = std::min(*margin, std::fabs(cum - target) / total);
    if (cum > target) return j;
  }
  return cand.back();
}

// testPick checks pick's sampling against refPick on random rows (widths
// not a power of two, excluded values, ties at the top-k threshold) for
// each of temperature, top-k, top-p and both, skipping draws within 1e-9
// of a boundary; a greedy row among sampled ones; and that a row's token
// does not depend on the other rows.
static void testPick() {
  std::uniform_real_distribution<double> uni(0, 1);
  const Draw kinds[] = {{0.7f, 0, 0, 0, 0}, {1.3f, 5, 0, 0, 0}, {1.0f, 0, 0.8f, 0, 0}, {0.9f, 40, 0.6f, 0, 0}, {2.f, 1, 0, 0, 0}, {1.f, 0, 1e-6f, 0, 0}};
  int cases = 0, skipped = 0, bad = 0;
  for (int trial = 0; trial < 60; trial++) {
    int w = 50 + (int)(uni(rng) * 900), m = 3;
    auto x = randv(m * w);
    for (int i = 0; i < m * w; i++) x[i] *= 1 + 3 * uni(rng);
    x[(trial * 7) % w] = -INFINITY;
    x[w + (trial * 13) % w] = NAN;
    x[2 * w + 1] = x[2 * w + 2] = x[2 * w + 3] = 2.5f;  // ties
    std::vector<Draw> d(m);
    for (int i = 0; i < m; i++) {
      d[i] = kinds[(trial + i) % 6];
      d[i].u = uni(rng);
    }
    if (trial % 10 == 0) d[1].temperature = 0;  // greedy among sampled rows
    int32_t ids[3];
    emu_launch(dim3{(unsigned)m, 1, 1}, dim3{256, 1, 1}, [&] { pick(ids, x.data(), w, d.data()); });
    for (int i = 0; i < m; i++) {
      double margin;
      int want = refPick(x.data() + i * w, w, d[i], &margin);
      if (margin < 1e-9) {
        skipped++;
        continue;
      }
      cases++;
      if (ids[i] != want && bad++ < 5)
        printf("FAIL pick: trial %d row %d (T %g, k %d, p %g, u %g): %d, want %d\n", trial, i, d[i].temperature,
               d[i].top_k, d[i].top_p, d[i].u, ids[i], want);
    }
    int32_t alone;  // the last row by itself
    emu_launch(dim3{1, 1, 1}, dim3{256, 1, 1}, [&] { pick(&alone, x.data() + 2 * w, w, d.data() + 2); });
    if (alone != ids[2] && bad++ < 5) printf("FAIL pick: trial %d: row 2 alone %d, in the batch %d\n", trial, alone, ids[2]);
  }
  failures += bad > 0;
  printf("%s pick, sampling against the float64 reference (%d draws, %d within 1e-9 of a boundary skipped)\n",
         bad ? "FAIL" : "ok  ", cases, skipped);
}

static void testElementwise() {
  long n = 1001;
  auto a = randv(n), c = randv(n);
  std::vector<float> out(n);
  std::vector<double> want(n);
  const char *names[] = {"add", "gelu", "quick_gelu"};
  for (int op = 0; op < 3; op++) {
    emu_launch(dim3{(unsigned)((n + 255) / 256), 1, 1}, dim3{256, 1, 1},
               [&] { elementwise(out.data(), a.data(), c.data(), n, op); });
    for (long i = 0; i < n; i++) {
      double v = a[i];
      switch (op) {
        case 0: want[i] = v + c[i]; break;
        case 1: want[i] = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); break;
        default: want[i] = v / (1 + std::exp(-1.702 * v));
      }
    }
    check((std::string("elementwise ") + names[op]).c_str(), out.data(), want, 5e-5);
  }

  // silu_mul over 7 rows of gate|up of width 143, with its bf16 copy.
  int rows = 7, width = 143;
  std::vector<float> gu(2 * n);
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < width; j++) {
      gu[2 * r * width + j] = a[r * width + j];
      gu[(2 * r + 1) * width + j] = c[r * width + j];
    }
  std::vector<uint16_t> h(n);
  emu_launch(dim3{(unsigned)((n + 255) / 256), 1, 1}, dim3{256, 1, 1},
             [&] { silu_mul(out.data(), gu.data(), width, n, h.data(), DT_BF16); });
  bool same = true;
  for (long i = 0; i < n; i++) {
    double v = a[i];
    want[i] = v / (1 + std::exp(-v)) * c[i];
    same &= h[i] == __float2bfloat16_rn(out[i]).x;
  }
  check("silu_mul", out.data(), want, 5e-5);
  expect(same, "silu_mul's bf16 copy of out");
}

static void testGathers() {
  int vocab = 11, width = 6;
  W t = makeW(DT_BF16, randv(vocab * width));
  int32_t ids[] = {3, -200, 10, 0};
  std::vector<float> out(4 * width, 9.f);
  emu_launch(dim3{4, 1, 1}, dim3{128, 1, 1}, [&] { embed(out.data(), t.p(), t.dt, ids, width); });
  std::vector<double> want(4 * width);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < width; j++) want[i * width + j] = ids[i] < 0 ? 9 : t.exact[ids[i] * width + j];
  check("embed (negative id untouched)", out.data(), want, 0);

  auto src = randv(3 * width);
  std::vector<float> dst(8 * width), back(3 * width);
  int32_t rows[] = {6, 0, 3};
  emu_launch(dim3{3, 1, 1}, dim3{128, 1, 1}, [&] { move_rows(dst.data(), src.data(), rows, width, 1); });
  emu_launch(dim3{3, 1, 1}, dim3{128, 1, 1}, [&] { move_rows(back.data(), dst.data(), rows, width, 0); });
  expect(memcmp(back.data(), src.data(), 4 * src.size()) == 0 && dst[width] == 0 && dst[6 * width] == src[0],
         "move_rows scatter then gather");

  W w = makeW(DT_F16, randv(15));
  auto base = randv(15);
  std::vector<float> acc = base;
  emu_launch(dim3{1, 1, 1}, dim3{256, 1, 1}, [&] { weight_to(acc.data(), w.p(), w.dt, 15, 1); });
  for (int i = 0; i < 15; i++) want[i] = base[i] + w.exact[i];
  check("weight_to accumulate", acc.data(), std::vector<double>(want.begin(), want.begin() + 15), 1e-6);

  std::vector<uint16_t> hx(5);
  float xs[5] = {1.f, -2.5f, 3.14159f, 1e-3f, 65000.f};
  emu_launch(dim3{1, 1, 1}, dim3{256, 1, 1}, [&] { to_half(hx.data(), xs, 5, DT_BF16); });
  expect(__bfloat162float(__nv_bfloat16{hx[2]}) == __bfloat162float(__float2bfloat16_rn(3.14159f)), "to_half bf16");
}

static void testRoPE() {
  int heads = 3, hd = 10, half = hd / 2, w = heads * hd;
  int32_t pos[] = {0, 1, 17, 700, 4095}, slots[] = {6, 0, 2, 5, 3};
  int m = 5;
  auto qkv = randv(m * 3 * w);
  std::vector<float> q(m * w), kc(8 * w), vc(8 * w), cs(4096 * hd);
  for (int p = 0; p < 4096; p++)
    for (int d = 0; d < half; d++) {
      float f = 1 / (float)std::pow(10000.0, (double)((float)(2 * d) / (float)hd));
      double a = (float)p * f;
      cs[p * hd + d] = (float)std::cos(a);
      cs[p * hd + half + d] = (float)std::sin(a);
    }
  emu_launch(dim3{(unsigned)m, 1, 1}, dim3{128, 1, 1}, [&] {
    rope_store(q.data(), kc.data(), vc.data(), DT_F32, qkv.data(), pos, slots, cs.data(), heads, hd);
  });
  std::vector<double> wq(m * w), wk(m * w), wv(m * w);
  std::vector<float> gk(m * w), gv(m * w);
  for (int i = 0; i < m; i++) {
    const float *row = &qkv[i * 3 * w];
    for (int h = 0; h < heads; h++)
      for (int d = 0; d < half; d++) {
        double a = pos[i] * std::pow(10000.0, -2.0 * d / hd), c = std::cos(a), s = std::sin(a);
        int x = h * hd + d, y = x + half;
        wq[i * w + x] = row[x] * c - row[y] * s;
        wq[i * w + y] = row[y] * c + row[x] * s;
        wk[i * w + x] = row[w + x] * c - row[w + y] * s;
        wk[i * w + y] = row[w + y] * c + row[w + x] * s;
      }
    for (int j = 0; j < w; j++) {
      wv[i * w + j] = row[2 * w + j];
      gk[i * w + j] = kc[slots[i] * w + j];
      gv[i * w + j] = vc[slots[i] * w + j];
    }
  }
  check("rope_store q", q.data(), wq, 1e-3);
  check("rope_store k", gk.data(), wk, 1e-3);
  check("rope_store v", gv.data(), wv, 0);
}

// Plan mirrors attention.go's attnPlan.add (attnGeom.part with sms
// multiprocessors, block size align).
struct Plan {
  int heads, align, sms;
  std::vector<AttnSeq> seqs;
  std::vector<AttnWork> work;
  std::vector<AttnRow> rows;
  std::vector<int32_t> blocks;
  int part(int keys) const {
    int p = std::max((keys * heads + 2 * sms - 1) / (2 * sms), 64);
    if (align > APMAX) return APMAX;
    return std::min((p + align - 1) / align * align, APMAX / align * align);
  }
  void add(int row, int n, int pos, int nkeys, const std::vector<int32_t> *blk, int keyBase, bool causal) {
    int si = seqs.size(), off = -1;
    if (blk) {
      off = blocks.size();
      blocks.insert(blocks.end(), blk->begin(), blk->end());
    }
    seqs.push_back({row, n, pos, nkeys, off, keyBase});
    auto keys = [&](int t) { return causal ? pos + t + 1 : nkeys; };
    for (int t0 = 0; t0 < n;) {
      int pt = part(keys(t0)), t1 = t0 + 1;
      while (t1 < n && t1 - t0 < AR && part(keys(t1)) == pt) t1++;
      int kmax = keys(t1 - 1), w0 = work.size();
      for (int k0 = 0; k0 < kmax; k0 += pt) work.push_back({si, row + t0, t1 - t0, k0, std::min(k0 + pt, kmax), pt});
      for (int t = t0; t < t1; t++)
        if (int ns = (keys(t) + pt - 1) / pt; ns > 1) rows.push_back({row + t, w0, ns, t - t0});
      t0 = t1;
    }
  }
  // run runs kernel k (an attn_* instance) and attn_combine.
  template <class KV>
  void run(void (*k)(ATTN_PARAMS(KV)), float *out, const float *q, const KV *kc, const KV *vc, int hd, int bs,
           bool causal) {
    std::vector<float> part(work.size() * AR * heads * (hd + 2));
    if (blocks.empty()) blocks.push_back(0);
    float scale = 1 / std::sqrt((float)hd);
    emu_launch(dim3{(unsigned)work.size(), (unsigned)heads, 1}, dim3{AT, 1, 1}, [&] {
      k(out, part.data(), q, kc, vc, seqs.data(), work.data(), blocks.data(), heads, hd, bs, causal, scale);
    });
    if (!rows.empty())
      emu_launch(dim3{(unsigned)rows.size(), (unsigned)heads, 1}, dim3{(unsigned)std::min(128, (hd + 31) & ~31), 1, 1},
                 [&] { attn_combine(out, part.data(), rows.data(), heads, hd); });
  }
};

// refAttn: query row at position qpos sees keys 0 … nk−1 given as rows.
static void refAttn(std::vector<double> &out, size_t o, const float *q, const std::vector<const float *> &keys,
                    const std::vector<const float *> &vals, int nk, int heads, int hd) {
  for (int h = 0; h < heads; h++) {
    std::vector<double> sc(nk);
    double mx = -INFINITY, sum = 0;
    for (int p = 0; p < nk; p++) {
      double d = 0;
      for (int j = 0; j < hd; j++) d += (double)q[h * hd + j] * keys[p][h * hd + j];
      sc[p] = d / std::sqrt((double)hd);
      mx = std::max(mx, sc[p]);
    }
    for (auto &s : sc) sum += (s = std::exp(s - mx));
    for (int j = 0; j < hd; j++) {
      double a = 0;
      for (int p = 0; p < nk; p++) a += sc[p] / sum * vals[p][h * hd + j];
      out[o + h * hd + j] = a;
    }
  }
}

// testPagedAttention runs a decode row at position 300, a 40-row prefill
// chunk at 240 and a fresh 20-row prefill through kernel k (head dimension
// hd, block size 16, float32 cache) with partitions sized for sms
// multiprocessors, against the reference, and each sequence alone against
// the batch (bitwise).
static void testPagedAttention(void (*k)(ATTN_PARAMS(float)), int hd, int sms, const char *name) {
  int heads = 2, bs = 16, nBlocks = 64, width = heads * hd;
  auto kc = randv(nBlocks * bs * width), vc = randv(nBlocks * bs * width);
  std::vector<int> perm(nBlocks);
  for (int i = 0; i < nBlocks; i++) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  struct S {
    int row, rows, pos;
    std::vector<int32_t> blocks;
  };
  std::vector<S> ss = {{0, 1, 300, {}}, {1, 40, 240, {}}, {41, 20, 0, {}}};
  int next = 0;
  for (auto &s : ss)
    for (int i = 0; i * bs < s.pos + s.rows; i++) s.blocks.push_back(perm[next++]);
  int rows = 61;
  auto q = randv(rows * width);
  std::vector<float> out(rows * width);
  Plan p{heads, bs, sms};
  for (auto &s : ss) p.add(s.row, s.rows, s.pos, s.pos + s.rows, &s.blocks, 0, true);
  p.run(k, out.data(), q.data(), kc.data(), vc.data(), hd, bs, true);
  std::vector<double> want(rows * width);
  for (auto &s : ss)
    for (int r = 0; r < s.rows; r++) {
      int nk = s.pos + r + 1;
      std::vector<const float *> keys, vals;
      for (int p = 0; p < nk; p++) {
        long kr = (long)s.blocks[p / bs] * bs + p % bs;
        keys.push_back(&kc[kr * width]);
        vals.push_back(&vc[kr * width]);
      }
      refAttn(want, (size_t)(s.row + r) * width, &q[(s.row + r) * width], keys, vals, nk, heads, hd);
    }
  check(name, out.data(), want, 5e-5);
  for (auto &s : ss) {
    Plan one{heads, bs, sms};
    one.add(0, s.rows, s.pos, s.pos + s.rows, &s.blocks, 0, true);
    std::vector<float> alone(s.rows * width);
    one.run(k, alone.data(), &q[s.row * width], kc.data(), vc.data(), hd, bs, true);
    expect(memcmp(alone.data(), &out[s.row * width], 4 * alone.size()) == 0, "paged attention: alone == batched (bitwise)");
  }
}

static void testDenseAttention() {
  int seqs = 2, seqLen = 37, heads = 2, hd = 128, width = heads * hd, n = seqs * seqLen * width;
  auto q = randv(n), k = randv(n), v = randv(n);
  std::vector<float> out(n);
  Plan p{heads, 1, 1};
  for (int s = 0; s < seqs; s++) p.add(s * seqLen, seqLen, 0, seqLen, nullptr, s * seqLen, false);
  p.run(attn_f32_128_16, out.data(), q.data(), k.data(), v.data(), hd, 1, false);
  std::vector<double> want(n);
  for (int s = 0; s < seqs; s++) {
    std::vector<const float *> keys, vals;
    for (int j = 0; j < seqLen; j++) {
      keys.push_back(&k[(s * seqLen + j) * width]);
      vals.push_back(&v[(s * seqLen + j) * width]);
    }
    for (int i = 0; i < seqLen; i++)
      refAttn(want, (size_t)(s * seqLen + i) * width, &q[(s * seqLen + i) * width], keys, vals, seqLen, heads, hd);
  }
  check("dense attention (non-causal, hd 128)", out.data(), want, 5e-5);
}

int main() {
  testGemm();
  testNorms();
  testElementwise();
  testPick();
  testGathers();
  testRoPE();
  testDenseAttention();
  testPagedAttention(attn_f32_any, 40, 1, "paged attention (generic kernel, hd 40)");
  testPagedAttention(attn_f32_128_16, 128, 1, "paged attention (hd 128, block 16, 512-key partitions)");
  testPagedAttention(attn_f32_128_16, 128, 132, "paged attention (hd 128, block 16, 64-key partitions)");
  if (failures) {
    printf("%d FAILED\n", failures);
    return 1;
  }
  printf("all kernels passed on the CPU emulation\n");
  return 0;
}
