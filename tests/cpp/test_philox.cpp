// Philox4x32-10: the scalar generator against the published known-answer
// vectors of Random123, and the AVX2 batch against the scalar one.
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "check.h"
#include "common/philox.h"
#include "cpu/philox_simd.h"

namespace {

using pada::Philox4;

void check_known_answer(Philox4 ctr, uint32_t k0, uint32_t k1, Philox4 expected) {
  const Philox4 got = pada::philox4x32_10(ctr, k0, k1);
  for (int w = 0; w < 4; ++w)
    PADA_CHECK_EQ(got.v[w], expected.v[w], "word ", w, " for ctr ", ctr.v[0], ",", ctr.v[1], ",",
                  ctr.v[2], ",", ctr.v[3], " key ", k0, ",", k1);
}

void test_known_answers() {
  check_known_answer({{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}});
  check_known_answer({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu,
                     0xffffffffu, {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}});
  check_known_answer({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u,
                     0x299f31d0u, {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}});
}

// philox_draw packs (index, stream) into the counter and the seed into the key.
void test_draw_layout() {
  const uint64_t seed = 0x299f31d0a4093822ull, index = 0x85a308d3243f6a88ull;
  const Philox4 a = pada::philox_draw(seed, index, 0x13198a2eu);
  const Philox4 b =
      pada::philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0}}, 0xa4093822u, 0x299f31d0u);
  PADA_CHECK(std::memcmp(&a, &b, sizeof a) == 0);
}

using Batch = uint32_t[2][4][pada::cpu::kPhiloxLanes];

// out[h][w][t] must be word w of philox_draw(seed, first + 8 h + t, stream).
void check_batch_against_draw(const Batch& out, uint64_t seed, uint64_t first, uint32_t stream) {
  for (int h = 0; h < 2; ++h)
    for (int t = 0; t < pada::cpu::kPhiloxLanes; ++t) {
      const uint64_t index = first + static_cast<uint64_t>(h * pada::cpu::kPhiloxLanes + t);
      const Philox4 r = pada::philox_draw(seed, index, stream);
      for (int w = 0; w < 4; ++w)
        PADA_CHECK_EQ(out[h][w][t], r.v[w], "seed ", seed, " index ", index, " word ", w);
    }
}

// Offsets chosen so that first + t carries into the high counter word, and wraps.
constexpr uint64_t kFirsts[] = {0,
                                1,
                                12345,
                                0xfffffff8ull,
                                0xfffffff0ull,
                                0xffffffffull,
                                0x1fffffffbull,
                                0x123456789abcdef0ull,
                                0xfffffffffffffff7ull};
constexpr uint64_t kSeeds[] = {0, 1, 0xffffffffull, 0x100000000ull, 0xdeadbeefcafef00dull, ~0ull};
constexpr uint32_t kStreams[] = {0, 1, 0xffffffffu};

void test_scalar_batch() {
  Batch out;
  for (uint64_t seed : kSeeds)
    for (uint64_t first : kFirsts)
      for (uint32_t stream : kStreams) {
        pada::cpu::philox16_scalar(seed, first, stream, out);
        check_batch_against_draw(out, seed, first, stream);
      }
}

bool test_avx2_batch() {
#ifdef PADA_HAVE_AVX2_PATH
  if (!__builtin_cpu_supports("avx2")) return false;
  Batch simd, scalar;
  for (uint64_t seed : kSeeds)
    for (uint64_t first : kFirsts)
      for (uint32_t stream : kStreams) {
        std::memset(simd, 0xAB, sizeof simd);
        pada::cpu::philox16_avx2(seed, first, stream, simd);
        pada::cpu::philox16_scalar(seed, first, stream, scalar);
        PADA_CHECK(std::memcmp(simd, scalar, sizeof simd) == 0, "seed ", seed, " first ", first,
                   " stream ", stream);
      }
  // The kernels call whatever best_philox16 picks: the AVX2 one unless
  // PADA_CPU_ISA=scalar caps the choice (csrc/cpu/isa.h).
  PADA_CHECK(pada::cpu::best_philox16() ==
             (pada::cpu::use_avx2() ? &pada::cpu::philox16_avx2 : &pada::cpu::philox16_scalar));
  return true;
#else
  return false;
#endif
}

}  // namespace

int main() {
  test_known_answers();
  test_draw_layout();
  test_scalar_batch();
  const bool avx2 = test_avx2_batch();
  std::printf("test_philox: OK%s\n", avx2 ? "" : " (no AVX2 on this CPU: SIMD path not tested)");
  return 0;
}
