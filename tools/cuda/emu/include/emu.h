// emu.h — a CPU emulation of the small part of CUDA that kernels/cuda/kernels.cu
// uses, so its kernels' logic can be tested without a GPU (tools/cuda/emu/run.sh).
// Every CUDA thread of a block is an OS thread; blocks run one after another,
// so __shared__ (static) storage is per block. __syncthreads is a block-wide
// barrier; warp shuffles go through a per-warp slot array and barrier. Only
// full-warp shuffles are supported (all kernels use mask 0xffffffff).
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

struct emu_block {
  std::unique_ptr<std::barrier<>> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  uint32_t slots[32][32];
};
inline emu_block *emu_cur;

inline int emu_tid() { return threadIdx.x + threadIdx.y * blockDim.x; }
inline void __syncthreads() { emu_cur->all->arrive_and_wait(); }

inline uint32_t emu_shfl(uint32_t v, int src) {
  int t = emu_tid(), w = t >> 5, lane = t & 31;
  emu_cur->slots[w][lane] = v;
  emu_cur->warps[w]->arrive_and_wait();
  uint32_t r = emu_cur->slots[w][src & 31];
  emu_cur->warps[w]->arrive_and_wait();
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

inline int min(int a, int b) { return a < b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }

// emu_launch runs f for every thread of every block of grid.
template <class F>
void emu_launch(dim3 grid, dim3 block, F f) {
  gridDim = grid;
  blockDim = block;
  int nt = block.x * block.y;
  for (unsigned by = 0; by < grid.y; by++)
    for (unsigned bx = 0; bx < grid.x; bx++) {
      emu_block b;
      b.all = std::make_unique<std::barrier<>>(nt);
      for (int w = 0; w * 32 < nt; w++) b.warps.push_back(std::make_unique<std::barrier<>>(std::min(32, nt - w * 32)));
      emu_cur = &b;
      std::vector<std::thread> ts;
      for (int t = 0; t < nt; t++)
        ts.emplace_back([&, t] {
          threadIdx = dim3{(unsigned)(t % block.x), (unsigned)(t / block.x), 1};
          blockIdx = dim3{bx, by, 1};
          f();
        });
      for (auto &t : ts) t.join();
    }
}
