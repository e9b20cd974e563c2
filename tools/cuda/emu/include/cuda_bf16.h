// Emulated bfloat16 (see emu.h).
#pragma once
#include "emu.h"
struct __nv_bfloat16 {
  uint16_t x;
};
inline float __bfloat162float(__nv_bfloat16 b) { return emu_float((uint32_t)b.x << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u = emu_bits(f);
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even (finite inputs)
  return __nv_bfloat16{(uint16_t)(u >> 16)};
}
