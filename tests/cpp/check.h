// Minimal assertions for the C++ tests: report the failed condition, the values
// involved and where, then exit non-zero, which is all ctest needs.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace pada_test {

[[noreturn]] inline void fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
  std::exit(1);
}

// Joins any streamable values into one message.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  os.precision(17);
  (os << ... << args);
  return os.str();
}

}  // namespace pada_test

// PADA_CHECK(cond, context...): the optional context is streamed after the condition.
#define PADA_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond))                                                                \
      pada_test::fail(__FILE__, __LINE__,                                       \
                      pada_test::str(#cond __VA_OPT__(, " | ", ) __VA_ARGS__)); \
  } while (0)

#define PADA_CHECK_EQ(a, b, ...)                                                   \
  do {                                                                             \
    const auto& check_a_ = (a);                                                    \
    const auto& check_b_ = (b);                                                    \
    if (!(check_a_ == check_b_))                                                   \
      pada_test::fail(__FILE__, __LINE__,                                          \
                      pada_test::str(#a " == " #b ": ", check_a_, " vs ",          \
                                     check_b_ __VA_OPT__(, " | ", ) __VA_ARGS__)); \
  } while (0)
