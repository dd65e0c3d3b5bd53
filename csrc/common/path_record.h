// Math of pada::path_record_ shared by the CPU and CUDA kernels: one cell
// (row, op) of PathSampler's score tables, from the grouped norms of the
// path's gradients to the updated score. Every operation is the float32 op
// that PathSampler's torch code ran (pada_ext/reference/path_record.py), with
// its rounding made explicit, so that the tables get the same bits:
//   step  = sqrt(sq * weight)                      (l2: sq, the cell's sum of squares)
//         = (sum of the cell's tensor norms) * weight   (paper; the sum in float64;
//           NaN for every cell if any norm is not finite)
//   step /= grad_scale                             (AMP, when given)
//   paper: s <- (s + step) * 0.5 where 0 < step < inf
//   ema:   s <- visited ? lerp(s, step, 1 - decay) : step where step is finite
//   mean:  count += 1, s <- s + (step - s) / count where step is finite
// A cell whose weight is 0 is off the path: left alone.
#pragma once

#include <cmath>
#include <cstdint>

#include "macros.h"

namespace pada {
namespace path {

// Norms and rules (pada_ext/_codes.py: PATH_NORM, PATH_RULE).
enum Norm : int { kNormL2 = 0, kNormPaper = 1 };
enum Rule : int { kRulePaper = 0, kRuleEma = 1, kRuleMean = 2 };

PADA_HD bool valid_norm(int64_t n) { return n == kNormL2 || n == kNormPaper; }
PADA_HD bool valid_rule(int64_t r) { return r == kRulePaper || r == kRuleEma || r == kRuleMean; }

// The step of a cell from the grouped values of its range [b, e): l2 has one
// group per cell (its float32 sum of squares), paper one per tensor (its
// float32 norm), summed in float64 in tensor order.
PADA_HD float cell_step(const float* vals, int64_t b, int64_t e, float weight, int norm) {
  if (norm == kNormL2) return b < e ? sqrt_rn(mul_rn(vals[b], weight)) : 0.0f;
  double acc = 0.0;
  for (int64_t i = b; i < e; ++i) acc = add_rn(acc, static_cast<double>(vals[i]));
  return static_cast<float>(mul_rn(acc, static_cast<double>(weight)));
}

// paper: a gradient whose norm is not finite (an overflowed step) makes every
// step NaN, as the matrix product of the torch code did (0 * inf): the step
// is skipped for every op on the path. vals are the n tensor norms.
PADA_HD bool paper_poisoned(const float* vals, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!(vals[i] < INFINITY)) return true;  // NaN or inf (norms are >= 0)
  }
  return false;
}

// torch.lerp(s, t, w) as torch computes it in float32: one rounding (an FMA)
// from whichever end is nearer.
PADA_HD float lerp(float s, float t, float w) {
  const float d = sub_rn(t, s);
  return (w < 0.5f && w > -0.5f) ? fma_rn(w, d, s) : fma_rn(sub_rn(w, 1.0f), d, t);
}

PADA_HD bool is_finite(float x) { return sub_rn(x, x) == 0.0f; }  // false for NaN, +-inf

// One cell's tables.
struct Cell {
  float score;
  bool visited;
  float count;
  int64_t skipped;
};

// The cell after a step; `w` is 1 - decay rounded to float32 (as torch
// rounds a Python float weight for float32 tensors).
PADA_HD Cell record_cell(Cell c, float step, int rule, float w) {
  bool take;
  if (rule == kRulePaper) {
    const bool finite = step < INFINITY;  // the authors' test is step != 0
    take = finite && step > 0.0f;
    if (!finite) ++c.skipped;
    if (take) c.score = mul_rn(add_rn(c.score, step), 0.5f);
  } else {
    take = is_finite(step);
    if (!take) {
      ++c.skipped;
    } else if (rule == kRuleEma) {
      c.score = c.visited ? lerp(c.score, step, w) : step;
    } else {
      c.count = add_rn(c.count, 1.0f);
      const float n = c.count < 1.0f ? 1.0f : c.count;
      c.score = add_rn(c.score, div_rn(sub_rn(step, c.score), n));
    }
  }
  c.visited = c.visited || take;
  return c;
}

// The score tables and the op's codes, as the kernels read them (device
// pointers on CUDA); the host plan fills them once per call.
struct Tables {
  const float* weights;  // 0: the cell is off the path
  const float* scale;    // the GradScaler scale, or nullptr
  float* scores;
  bool* visited;
  float* count;
  int64_t* skipped;
  int norm;
  int rule;
  float one_minus_decay;  // ema's lerp weight, as torch rounds it
};

// Cell c after this record, in place: its step from the grouped values
// vals[b, e), NaN when `poisoned` (paper_poisoned over all the norms), then
// the rule's update. Every kernel runs this per cell; off-path cells are
// left alone.
PADA_HD void update_cell(const Tables& t, int64_t c, const float* vals, int64_t b, int64_t e,
                         bool poisoned) {
  const float w = t.weights[c];
  if (!(w > 0.0f)) return;
  float step = poisoned ? NAN : cell_step(vals, b, e, w, t.norm);
  if (t.scale != nullptr) step = div_rn(step, *t.scale);
  const Cell out = record_cell(Cell{t.scores[c], t.visited[c], t.count[c], t.skipped[c]}, step,
                               t.rule, t.one_minus_decay);
  t.scores[c] = out.score;
  t.visited[c] = out.visited;
  t.count[c] = out.count;
  t.skipped[c] = out.skipped;
}

}  // namespace path
}  // namespace pada
