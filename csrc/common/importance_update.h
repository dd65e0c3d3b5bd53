// Math of pada::importance_update_ shared by the CPU and CUDA kernels: one
// visit of a table entry. The first visit stores the value as it is; a later
// one keeps `decay` of the old score: s <- decay * s + (1 - decay) * v.
// decay = 1/2 is the PA&DA authors' rule, 0 keeps the last value.
//
// The CUDA kernel is written as the two step functions at the end (which
// entry owns a key, and that entry's replay of the key's visits), so that a
// host test (tests/cpp/test_importance_replay.cpp) can run every entry in any
// order and compare with the CPU kernel's sequential loop, bit for bit.
#pragma once

#include <cstdint>

#include "macros.h"

namespace pada {

// The counters of the status tensor (pada_ext/_codes.py names them too).
constexpr int kStatusOutOfRange = 0;  // indices outside the table (counted on CUDA)
constexpr int kStatusNonFinite = 1;   // values not finite as float32, skipped
constexpr int kStatusSize = 2;

PADA_HD float importance_visit(float score, bool visited, double value, double decay) {
  if (!visited) return static_cast<float>(value);
  return static_cast<float>(
      add_rn(mul_rn(decay, static_cast<double>(score)), mul_rn(1.0 - decay, value)));
}

PADA_HD bool finite_value(double v) { return v - v == 0.0; }  // false for NaN and +-inf

// A value the float32 table can take: finite once rounded to float32 (a float64
// 1e39 is finite, yet inf as float32, and is skipped like any non-finite value).
PADA_HD bool storable_value(double v) {
  return finite_value(static_cast<double>(static_cast<float>(v)));
}

// A value that is rejected (raised on CPU, counted on CUDA): storable and < 0.
PADA_HD bool negative_value(double v) { return storable_value(v) && v < 0.0; }

// Step 1, entry i of the batch: true if index[i] does not occur before i. The
// entry that owns a key is the only one that writes its table slot.
PADA_HD bool first_occurrence(const int64_t* index, int64_t i) {
  const int64_t key = index[i];
  for (int64_t j = 0; j < i; ++j) {
    if (index[j] == key) return false;
  }
  return true;
}

// A table slot while its owner replays it.
struct ImportanceSlot {
  float score;
  bool visited;
  uint64_t skipped;  // non-finite values met
};

// Step 2, run by the owner i of key = index[i]: every visit of that key, in
// batch order from i on (none occurs before i), exactly as the CPU kernel's
// sequential loop applies them.
template <typename V>
PADA_HD ImportanceSlot replay_visits(const int64_t* index, const V* values, int64_t n, int64_t i,
                                     ImportanceSlot slot, double decay) {
  const int64_t key = index[i];
  for (int64_t j = i; j < n; ++j) {
    if (index[j] != key) continue;
    const double x = static_cast<double>(values[j]);
    if (!storable_value(x)) {
      ++slot.skipped;
      continue;
    }
    slot.score = importance_visit(slot.score, slot.visited, x, decay);
    slot.visited = true;
  }
  return slot;
}

}  // namespace pada
