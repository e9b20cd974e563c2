// Emulated half precision (see emu.h), through GCC's _Float16.
#pragma once
#include "emu.h"
struct __half {
  uint16_t x;
};
inline float __half2float(__half h) {
  _Float16 f;
  memcpy(&f, &h.x, 2);
  return (float)f;
}
inline __half __float2half_rn(float f) {
  _Float16 h = (_Float16)f;
  __half r;
  memcpy(&r.x, &h, 2);
  return r;
}
