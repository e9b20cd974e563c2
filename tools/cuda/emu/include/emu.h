// emu.h — a CPU emulation of the small part of CUDA that kernels/cuda/kernels.cu
// uses, so its kernels' logic can be tested without a GPU (tools/cuda/emu/run.sh)
// and run by the emulated driver (tools/cuda/emu/driver); mma.h beside it
// emulates the tensor-core fragments (nvcuda::wmma).
//
// Every CUDA thread of a block is a fiber (its own stack) on the calling OS
// thread; the fibers of a block take turns, switching only at __syncthreads
// and warp shuffles, and blocks run one after another, so __shared__ (static)
// storage is per block. __syncthreads is a block-wide barrier; warp shuffles
// go through a per-warp slot array and barrier. Only full-warp shuffles are
// supported (all kernels use mask 0xffffffff). Fibers start once through
// makecontext/swapcontext and switch with _setjmp/_longjmp (no system call per
// switch). One launch runs at a time per process (emu_launch holds a mutex).
#pragma once
#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

// emu_barrier is a counting barrier for fibers: the last arrival starts a new
// generation, the others yield until it does.
struct emu_barrier {
  int n = 0, count = 0;
  unsigned gen = 0;
};

// emu_fiber is one CUDA thread's stack and saved registers.
struct emu_fiber {
  ucontext_t uc;
  jmp_buf jb;
  std::unique_ptr<char[]> stack;
  dim3 tid;
  bool done = true;
};

inline constexpr size_t emu_stack_bytes = 256 << 10;

// emu_state is the scheduler of the block being run.
struct emu_state {
  std::vector<std::unique_ptr<emu_fiber>> fibers;  // a pool, reused by every launch
  int nt = 0, cur = -1;
  jmp_buf sched;
  const std::function<void()> *body = nullptr;
  emu_barrier all;
  std::vector<emu_barrier> warps;
  uint32_t slots[32][32];
  std::mutex mu;
};
inline emu_state emu_s;

inline void emu_yield() {
  emu_fiber *f = emu_s.fibers[emu_s.cur].get();
  if (!_setjmp(f->jb)) _longjmp(emu_s.sched, 1);
}

inline void emu_wait(emu_barrier &b) {
  unsigned g = b.gen;
  if (++b.count == b.n) {
    b.count = 0;
    b.gen++;
    return;
  }
  while (b.gen == g) emu_yield();
}

// emu_entry is every fiber's loop: run the block's body, report done, wait
// for the next block.
inline void emu_entry(int i) {
  emu_fiber *f = emu_s.fibers[i].get();
  if (!_setjmp(f->jb)) _longjmp(emu_s.sched, 1);  // created: back to the scheduler
  for (;;) {
    (*emu_s.body)();
    f->done = true;
    emu_yield();
  }
}

// emu_resume runs fiber f until it yields (or, when start, enters it for
// the first time); in a frame of its own so that no caller's locals live
// across the jump.
[[gnu::noinline]] inline void emu_resume(emu_fiber *f, bool start) {
  static ucontext_t back;
  if (_setjmp(emu_s.sched)) return;
  if (start)
    swapcontext(&back, &f->uc);
  else
    _longjmp(f->jb, 1);
}

// emu_make prepares f's context to enter emu_entry(i) on its own stack.
[[gnu::noinline]] inline void emu_make(emu_fiber *f, int i) {
  f->stack.reset(new char[emu_stack_bytes]);
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack.get();
  f->uc.uc_stack.ss_size = emu_stack_bytes;
  f->uc.uc_link = nullptr;
  makecontext(&f->uc, (void (*)())emu_entry, 1, i);
}

// emu_grow makes sure the pool holds n fibers.
inline void emu_grow(int n) {
  while ((int)emu_s.fibers.size() < n) {
    int i = (int)emu_s.fibers.size();
    emu_s.fibers.push_back(std::make_unique<emu_fiber>());
    emu_make(emu_s.fibers[i].get(), i);
    emu_resume(emu_s.fibers[i].get(), true);
  }
}

inline int emu_tid() { return threadIdx.x + threadIdx.y * blockDim.x; }
inline void __syncthreads() { emu_wait(emu_s.all); }

inline uint32_t emu_shfl(uint32_t v, int src) {
  int t = emu_tid(), w = t >> 5, lane = t & 31;
  emu_s.slots[w][lane] = v;
  emu_wait(emu_s.warps[w]);
  uint32_t r = emu_s.slots[w][src & 31];
  emu_wait(emu_s.warps[w]);
  return r;
}
inline uint32_t emu_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
inline float emu_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline float __shfl_xor_sync(unsigned, float v, int o) {
  return emu_float(emu_shfl(emu_bits(v), (emu_tid() & 31) ^ o));
}
inline int __shfl_xor_sync(unsigned, int v, int o) {
  return (int)emu_shfl((uint32_t)v, (emu_tid() & 31) ^ o);
}
inline float __shfl_sync(unsigned, float v, int src) { return emu_float(emu_shfl(emu_bits(v), src)); }
inline void __syncwarp() { emu_wait(emu_s.warps[emu_tid() >> 5]); }

// 16-byte vector types and the read-only-cache load, as CUDA's.
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
template <class T>
inline T __ldg(const T *p) {
  return *p;
}

inline int min(int a, int b) { return a < b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
// The round-to-nearest float intrinsics (never contracted into an fma on a
// GPU; plain float arithmetic here, which g++ does not contract for x86-64).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline uint32_t __float_as_uint(float f) { return emu_bits(f); }
inline float __uint_as_float(uint32_t u) { return emu_float(u); }

// emu_launch runs f for every thread of every block of grid (2-D grids and
// blocks; z is 1).
template <class F>
void emu_launch(dim3 grid, dim3 block, F f) {
  std::lock_guard<std::mutex> lock(emu_s.mu);
  std::function<void()> body(f);
  gridDim = grid;
  blockDim = block;
  int nt = block.x * block.y;
  emu_grow(nt);
  emu_s.body = &body;
  emu_s.nt = nt;
  emu_s.all = emu_barrier{nt};
  emu_s.warps.assign((nt + 31) / 32, emu_barrier{});
  for (int w = 0; w * 32 < nt; w++) emu_s.warps[w].n = std::min(32, nt - w * 32);
  for (unsigned by = 0; by < grid.y; by++)
    for (unsigned bx = 0; bx < grid.x; bx++) {
      blockIdx = dim3{bx, by, 1};
      for (int t = 0; t < nt; t++) {
        emu_s.fibers[t]->done = false;
        emu_s.fibers[t]->tid = dim3{(unsigned)(t % block.x), (unsigned)(t / block.x), 1};
      }
      for (int left = nt; left > 0;) {
        left = 0;
        for (int t = 0; t < nt; t++) {
          emu_fiber *fb = emu_s.fibers[t].get();
          if (fb->done) continue;
          emu_s.cur = t;
          threadIdx = fb->tid;
          emu_resume(fb, false);
          left += !fb->done;
        }
      }
    }
  emu_s.cur = -1;
}
