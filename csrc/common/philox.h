// Philox4x32-10 (Salmon et al., SC'11): a counter-based generator, so every
// draw is a pure function of (key, counter) and the result cannot depend on
// how work is split across threads or GPU blocks.
#pragma once

#include "macros.h"

namespace pada {

struct Philox4 {
  uint32_t v[4];
};

PADA_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

PADA_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kM0, ctr.v[0], hi0, lo0);
    philox_mulhilo(kM1, ctr.v[2], hi1, lo1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// The four 32-bit words for stream `stream` of draw `index` under a 64-bit seed.
PADA_HD Philox4 philox_draw(uint64_t seed, uint64_t index, uint32_t stream) {
  return philox4x32_10(
      Philox4{{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), stream, 0u}},
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

}  // namespace pada
