// pada_ext._C.path_record_params: pada::path_record_ on the gradients of a
// list of parameters, read here (PathSampler.record's hot path). The op
// itself takes the gradients; going through Python costs per tensor a
// property read (.grad on an nn.Parameter looks up __torch_function__), the
// boxing of the list and, once the op has released the GIL, a GIL round trip
// to hand each tensor's reference back. Here the list is built from C++
// references with the GIL held, and the op is called unboxed, below autograd
// (the tables need no graph), on the kernel of the tables' device.
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <Python.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

#include <optional>

namespace pada {
namespace {

using RecordFn = void(const c10::List<std::optional<at::Tensor>>&, const at::Tensor&,
                      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                      const at::Tensor&, int64_t, int64_t, double,
                      const std::optional<at::Tensor>&);

const at::Tensor& tensor_arg(PyObject* o, const char* name) {
  TORCH_CHECK_TYPE(THPVariable_Check(o), "path_record_params: ", name, " must be a Tensor");
  return THPVariable_Unpack(o);
}

}  // namespace

// (params, cell_index, weights, scores, visited, count, skipped, norm, rule,
// decay, grad_scale or None): path_record_ with grads[i] = params[i].grad.
PyObject* path_record_params(PyObject*, PyObject* args) {
  HANDLE_TH_ERRORS
  PyObject *params, *cells, *weights, *scores, *visited, *count, *skipped, *scale;
  long long norm = 0, rule = 0;
  double decay = 0.0;
  if (!PyArg_ParseTuple(args, "O!OOOOOOLLdO", &PyList_Type, &params, &cells, &weights, &scores,
                        &visited, &count, &skipped, &norm, &rule, &decay, &scale))
    return nullptr;
  const Py_ssize_t n = PyList_GET_SIZE(params);
  c10::List<std::optional<at::Tensor>> grads;
  grads.reserve(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* p = PyList_GET_ITEM(params, i);
    TORCH_CHECK_TYPE(THPVariable_Check(p), "path_record_params: params[", i, "] is not a Tensor");
    const at::Tensor& g = THPVariable_Unpack(p).grad();
    grads.push_back(g.defined() ? std::optional<at::Tensor>(g) : std::nullopt);
  }
  const at::Tensor& s = tensor_arg(scores, "scores");
  std::optional<at::Tensor> grad_scale;
  if (scale != Py_None) grad_scale = tensor_arg(scale, "grad_scale");
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("pada::path_record_", "").typed<RecordFn>();
  const c10::DispatchKeySet keys(c10::computeDispatchKey(std::nullopt, std::nullopt, s.device()));
  op.redispatch(keys, grads, tensor_arg(cells, "cell_index"), tensor_arg(weights, "weights"), s,
                tensor_arg(visited, "visited"), tensor_arg(count, "count"),
                tensor_arg(skipped, "skipped"), norm, rule, decay, grad_scale);
  Py_RETURN_NONE;
  END_HANDLE_TH_ERRORS
}

}  // namespace pada
