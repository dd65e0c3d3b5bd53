// Philox4x32-10 for sixteen consecutive counters at once with AVX2, or
// thirty-two with AVX-512, bit-identical to pada::philox_draw. The CPU draw
// loop spends most of its arithmetic here. Chosen at run time; other CPUs use
// the scalar version.
#pragma once

#include <cstdint>

#include "../common/philox.h"
#include "isa.h"

#if defined(PADA_X86_SIMD)
#define PADA_HAVE_AVX2_PATH 1
#endif

namespace pada {
namespace cpu {

constexpr int kPhiloxLanes = 8;

// out[w][t] = word w of philox_draw(seed, first + t, stream), t < 8.
inline void philox8_scalar(uint64_t seed, uint64_t first, uint32_t stream,
                           uint32_t out[4][kPhiloxLanes]) {
  for (int t = 0; t < kPhiloxLanes; ++t) {
    const Philox4 r = philox_draw(seed, first + t, stream);
    for (int w = 0; w < 4; ++w) out[w][t] = r.v[w];
  }
}

#ifdef PADA_HAVE_AVX2_PATH
// One Philox state of eight lanes, advanced a round at a time.
struct Philox8State {
  __m256i c0, c1, c2, c3;
};

__attribute__((target("avx2"))) inline Philox8State philox8_init(uint64_t first, uint32_t stream) {
  alignas(32) uint32_t lo[kPhiloxLanes], hi[kPhiloxLanes];
  for (int t = 0; t < kPhiloxLanes; ++t) {
    lo[t] = static_cast<uint32_t>(first + t);
    hi[t] = static_cast<uint32_t>((first + t) >> 32);
  }
  return Philox8State{_mm256_load_si256(reinterpret_cast<const __m256i*>(lo)),
                      _mm256_load_si256(reinterpret_cast<const __m256i*>(hi)),
                      _mm256_set1_epi32(static_cast<int>(stream)), _mm256_setzero_si256()};
}

__attribute__((target("avx2"))) inline void philox8_round(Philox8State& s, __m256i k0, __m256i k1) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  // 32x32->64 products of the even lanes, then of the odd lanes.
  const __m256i e0 = _mm256_mul_epu32(s.c0, m0);
  const __m256i o0 = _mm256_mul_epu32(_mm256_srli_epi64(s.c0, 32), m0);
  const __m256i e1 = _mm256_mul_epu32(s.c2, m1);
  const __m256i o1 = _mm256_mul_epu32(_mm256_srli_epi64(s.c2, 32), m1);
  const __m256i lo0 = _mm256_blend_epi32(e0, _mm256_slli_epi64(o0, 32), 0xAA);
  const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(e0, 32), o0, 0xAA);
  const __m256i lo1 = _mm256_blend_epi32(e1, _mm256_slli_epi64(o1, 32), 0xAA);
  const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(e1, 32), o1, 0xAA);
  s.c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, s.c1), k0);
  s.c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, s.c3), k1);
  s.c1 = lo1;
  s.c3 = lo0;
}

__attribute__((target("avx2"))) inline void philox8_store(const Philox8State& s,
                                                          uint32_t out[4][kPhiloxLanes]) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[0]), s.c0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[1]), s.c1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[2]), s.c2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[3]), s.c3);
}

// Two independent eight-lane chains in flight hide the multiply latency.
__attribute__((target("avx2"))) inline void philox16_avx2(uint64_t seed, uint64_t first,
                                                          uint32_t stream,
                                                          uint32_t out[2][4][kPhiloxLanes]) {
  Philox8State a = philox8_init(first, stream);
  Philox8State b = philox8_init(first + kPhiloxLanes, stream);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const __m256i vk0 = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i vk1 = _mm256_set1_epi32(static_cast<int>(k1));
    philox8_round(a, vk0, vk1);
    philox8_round(b, vk0, vk1);
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  philox8_store(a, out[0]);
  philox8_store(b, out[1]);
}

// The AVX-512 path: the same rounds on sixteen lanes; its callers carry the
// target attribute too, so that the state stays in registers.
#define PADA_AVX512_TARGET "avx512f,avx512vl,avx512dq,avx512bw,bmi2"

struct Philox16State {
  __m512i c[4];
};

__attribute__((target(PADA_AVX512_TARGET))) inline void philox16_round(Philox16State& s, __m512i k0,
                                                                       __m512i k1) {
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  // 32x32->64 products of the even lanes, then of the odd lanes.
  const __m512i e0 = _mm512_mul_epu32(s.c[0], m0);
  const __m512i o0 = _mm512_mul_epu32(_mm512_srli_epi64(s.c[0], 32), m0);
  const __m512i e1 = _mm512_mul_epu32(s.c[2], m1);
  const __m512i o1 = _mm512_mul_epu32(_mm512_srli_epi64(s.c[2], 32), m1);
  constexpr __mmask16 kOdd = 0xAAAA;
  const __m512i lo0 = _mm512_mask_blend_epi32(kOdd, e0, _mm512_slli_epi64(o0, 32));
  const __m512i hi0 = _mm512_mask_blend_epi32(kOdd, _mm512_srli_epi64(e0, 32), o0);
  const __m512i lo1 = _mm512_mask_blend_epi32(kOdd, e1, _mm512_slli_epi64(o1, 32));
  const __m512i hi1 = _mm512_mask_blend_epi32(kOdd, _mm512_srli_epi64(e1, 32), o1);
  // hi ^ c ^ k in one ternary-logic instruction (0x96: three-way xor).
  s.c[0] = _mm512_ternarylogic_epi32(hi1, s.c[1], k0, 0x96);
  s.c[2] = _mm512_ternarylogic_epi32(hi0, s.c[3], k1, 0x96);
  s.c[1] = lo1;
  s.c[3] = lo0;
}

// Words of philox_draw(seed, first + 16 h + t, 0) for t < 16 into out[h].c[w]
// (lane t of word w), h < 2: two independent chains hide the multiply latency.
__attribute__((target(PADA_AVX512_TARGET))) inline void philox32_avx512(uint64_t seed,
                                                                        uint64_t first,
                                                                        Philox16State out[2]) {
  const __m512i iota = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  for (int h = 0; h < 2; ++h) {
    // 64-bit counters, then their low and high words: a carry past 2^32 is kept.
    const __m512i a =
        _mm512_add_epi64(_mm512_set1_epi64(static_cast<int64_t>(first + 16 * h)), iota);
    const __m512i b = _mm512_add_epi64(a, _mm512_set1_epi64(8));
    const __m256i lo_a = _mm512_cvtepi64_epi32(a), lo_b = _mm512_cvtepi64_epi32(b);
    const __m256i hi_a = _mm512_cvtepi64_epi32(_mm512_srli_epi64(a, 32));
    const __m256i hi_b = _mm512_cvtepi64_epi32(_mm512_srli_epi64(b, 32));
    out[h].c[0] = _mm512_inserti64x4(_mm512_castsi256_si512(lo_a), lo_b, 1);
    out[h].c[1] = _mm512_inserti64x4(_mm512_castsi256_si512(hi_a), hi_b, 1);
    out[h].c[2] = _mm512_setzero_si512();
    out[h].c[3] = _mm512_setzero_si512();
  }
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const __m512i vk0 = _mm512_set1_epi32(static_cast<int>(k0));
    const __m512i vk1 = _mm512_set1_epi32(static_cast<int>(k1));
    philox16_round(out[0], vk0, vk1);
    philox16_round(out[1], vk0, vk1);
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}
#endif

inline void philox16_scalar(uint64_t seed, uint64_t first, uint32_t stream,
                            uint32_t out[2][4][kPhiloxLanes]) {
  philox8_scalar(seed, first, stream, out[0]);
  philox8_scalar(seed, first + kPhiloxLanes, stream, out[1]);
}

// out[h][w][t] = word w of philox_draw(seed, first + 8 h + t, stream).
using Philox16Fn = void (*)(uint64_t, uint64_t, uint32_t, uint32_t[2][4][kPhiloxLanes]);

inline Philox16Fn best_philox16() {
#ifdef PADA_HAVE_AVX2_PATH
  if (use_avx2()) return &philox16_avx2;
#endif
  return &philox16_scalar;
}

}  // namespace cpu
}  // namespace pada
