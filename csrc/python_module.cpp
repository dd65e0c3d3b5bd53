// Makes the shared library importable as pada_ext._C; importing it runs the
// static TORCH_LIBRARY registrations. Its attributes are the numeric codes
// shared with Python (tests/test_codes.py compares them with
// pada_ext/_codes.py) and cpu_isa(), the CPU kernels' instruction set.
#include <Python.h>

#include "common/cross_entropy_with_grad_norm_math.h"
#include "common/grouped_grad_norm.h"
#include "common/importance_update.h"
#include "common/path_record.h"
#include "cpu/isa.h"

namespace pada {
PyObject* path_record_params(PyObject*, PyObject* args);  // csrc/python_path_record.cpp
}  // namespace pada

namespace {

struct Code {
  const char* name;
  long value;
};

constexpr Code kCodes[] = {
    {"STATUS_OUT_OF_RANGE", pada::kStatusOutOfRange},
    {"STATUS_NONFINITE", pada::kStatusNonFinite},
    {"STATUS_SIZE", pada::kStatusSize},
    {"REDUCTION_NONE", pada::xent::kReduceNone},
    {"REDUCTION_MEAN", pada::xent::kReduceMean},
    {"REDUCTION_SUM", pada::xent::kReduceSum},
    {"GROUPED_NORM_CHUNK", pada::gnorm::kChunk},
    {"GROUPED_NORM_DTYPE_FLOAT32", pada::gnorm::kF32},
    {"GROUPED_NORM_DTYPE_FLOAT16", pada::gnorm::kF16},
    {"GROUPED_NORM_DTYPE_BFLOAT16", pada::gnorm::kBF16},
    {"GROUPED_NORM_FINISH_NORM", pada::gnorm::kNorm},
    {"GROUPED_NORM_FINISH_SQUARED", pada::gnorm::kSquared},
    {"GROUPED_NORM_FINISH_ACCUMULATE", pada::gnorm::kAccumulate},
    {"PATH_NORM_L2", pada::path::kNormL2},
    {"PATH_NORM_PAPER", pada::path::kNormPaper},
    {"PATH_RULE_PAPER", pada::path::kRulePaper},
    {"PATH_RULE_EMA", pada::path::kRuleEma},
    {"PATH_RULE_MEAN", pada::path::kRuleMean},
};

// The instruction set the CPU kernels use: pada_ext._C.cpu_isa().
PyObject* cpu_isa(PyObject*, PyObject*) {
  try {
    return PyUnicode_FromString(pada::cpu::isa_name(pada::cpu::isa()));
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
    return nullptr;
  }
}

PyMethodDef kMethods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS,
     "The instruction set of the CPU kernels (PADA_CPU_ISA caps it)."},
    {"path_record_params", pada::path_record_params, METH_VARARGS,
     "pada::path_record_ on the .grad of each of a list of parameters "
     "(csrc/python_path_record.cpp)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, kMethods};
  PyObject* m = PyModule_Create(&module_def);
  if (m == nullptr) return nullptr;
  for (const Code& c : kCodes) {
    if (PyModule_AddIntConstant(m, c.name, c.value) != 0) {
      Py_DECREF(m);
      return nullptr;
    }
  }
  return m;
}
}
