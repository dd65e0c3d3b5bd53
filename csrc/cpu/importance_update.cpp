// CPU kernel of pada::importance_update_: visits the batch in order, so that
// repeated indices are applied exactly as a sequential loop would apply them.
// A batch is a few hundred entries: one thread, no parallel region to wake.
// Negative values and out-of-range indices raise here, naming the first one,
// before any change (the other backends screen them in pada_ext/ops/_importance_update.py).
#include "../common/importance_update.h"

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "../host/importance_update.h"

namespace pada {
namespace {

void importance_update_cpu(at::Tensor& scores, at::Tensor& visited, at::Tensor& status,
                           const at::Tensor& index, const at::Tensor& values, double decay) {
  check_importance_update_args(scores, visited, status, index, values, decay);
  const at::Tensor idx = index.contiguous();
  const at::Tensor val = values.contiguous();
  const int64_t n = idx.numel(), size = scores.numel();
  const int64_t* ip = idx.data_ptr<int64_t>();
  float* sp = scores.data_ptr<float>();
  bool* vp = visited.data_ptr<bool>();
  int64_t skipped = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, val.scalar_type(), "importance_update_cpu", [&] {
        const scalar_t* v = val.data_ptr<scalar_t>();
        // Check every entry before touching the table: an error leaves it unchanged.
        for (int64_t i = 0; i < n; ++i) {
          TORCH_CHECK_INDEX(ip[i] >= 0 && ip[i] < size, "importance_update_: index[", i,
                            "] = ", ip[i], " is out of range for a table of ", size, " entries");
          const double x = static_cast<double>(v[i]);
          TORCH_CHECK_VALUE(!negative_value(x), "importance_update_: values[", i, "] = ", x,
                            " (for index[", i, "] = ", ip[i],
                            ") is negative; importance scores must be >= 0");
        }
        for (int64_t i = 0; i < n; ++i) {
          const double x = static_cast<double>(v[i]);
          if (!storable_value(x)) {
            ++skipped;
            continue;
          }
          sp[ip[i]] = importance_visit(sp[ip[i]], vp[ip[i]], x, decay);
          vp[ip[i]] = true;
        }
      });
  status.data_ptr<int64_t>()[kStatusNonFinite] += skipped;
}

}  // namespace

TORCH_LIBRARY_IMPL(pada, CPU, m) { m.impl("importance_update_", &importance_update_cpu); }

}  // namespace pada
