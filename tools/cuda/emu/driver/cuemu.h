// cuemu.h — the emulated driver's internal interface between its parts:
// the kernel table (kernels.cpp, kernels.cu compiled against emu.h), the
// driver API (driver.cpp) and the emulated cuBLAS (cublas.cpp).
#pragma once
#include <cstddef>
#include <functional>

// cuemu_kernel is one `extern "C" __global__` function of kernels.cu: bind
// copies the launch's parameters (each *params[i] read as the kernel's i-th
// parameter type, as the driver does from the PTX signature) and returns
// the launch, to be run when the stream reaches it.
struct cuemu_kernel {
  const char *name;
  std::function<void()> (*bind)(unsigned gx, unsigned gy, unsigned bx, unsigned by, void **params);
};

// cuemu_kernels is the table, ended by a null name.
extern const cuemu_kernel cuemu_kernels[];

// Operation kinds counted by the driver (pancap_cuemu_stats's order).
enum cuemu_kind {
  CUEMU_LAUNCH,
  CUEMU_HTOD,
  CUEMU_DTOH,
  CUEMU_DTOD,
  CUEMU_MEMSET,
  CUEMU_SYNC,
  CUEMU_ALLOC,
  CUEMU_FREE,
  CUEMU_GEMM,
  CUEMU_HTOD_BYTES,
  CUEMU_DTOH_BYTES,
  CUEMU_NKINDS
};

// pancap_cuemu_enqueue queues op on the (single, in-order) emulated stream;
// it returns 0 or the context's sticky CUresult (then op is dropped).
extern "C" int pancap_cuemu_enqueue(int kind, std::function<void()> *op);
