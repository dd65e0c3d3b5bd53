// Makes the shared library importable as pada_ext._C; importing it runs the
// static TORCH_LIBRARY registrations. No Python bindings live here.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
