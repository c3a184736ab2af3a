// A deliberately tiny test harness (no downloads, no framework): TEST registers a function,
// CHECK* record a failure and go on, REQUIRE* end the test. Run one test by passing a substring
// of its name: blocksnap_native_tests extents
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"

namespace harness {

struct TestCase {
  const char* name;
  void (*fn)();
};

std::vector<TestCase>& registry();

struct Registrar {
  Registrar(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

struct Abort {};  // thrown by REQUIRE to leave the current test

void fail(const char* file, int line, const std::string& what);

template <typename A, typename B>
std::string describe_pair(const A& a, const B& b) {
  std::ostringstream s;
  s << " (" << a << " vs " << b << ")";
  return s.str();
}

}  // namespace harness

#define TEST(name)                                                   \
  static void test_##name();                                         \
  static ::harness::Registrar registrar_##name(#name, &test_##name); \
  static void test_##name()

#define CHECK(cond) \
  do {              \
    if (!(cond)) ::harness::fail(__FILE__, __LINE__, #cond); \
  } while (0)

#define CHECK_EQ(a, b)                                                                     \
  do {                                                                                     \
    const auto& va_ = (a);                                                                 \
    const auto& vb_ = (b);                                                                 \
    if (!(va_ == vb_)) ::harness::fail(__FILE__, __LINE__, #a " == " #b + ::harness::describe_pair(va_, vb_)); \
  } while (0)

#define REQUIRE(cond)                                        \
  do {                                                       \
    if (!(cond)) {                                           \
      ::harness::fail(__FILE__, __LINE__, #cond);            \
      throw ::harness::Abort{};                              \
    }                                                        \
  } while (0)

// Runs `expr`, which must throw blocksnap::Error with `expected_code`; binds it to `err` for
// further checks in the following block.
#define CHECK_THROWS_CODE(expr, expected_code)                                                   \
  do {                                                                                           \
    try {                                                                                        \
      expr;                                                                                      \
      ::harness::fail(__FILE__, __LINE__, #expr " did not throw");                               \
    } catch (const ::blocksnap::Error& e_) {                                                     \
      if (e_.code() != (expected_code))                                                          \
        ::harness::fail(__FILE__, __LINE__, std::string(#expr " threw ") + e_.code_name() + ": " + e_.what()); \
    }                                                                                            \
  } while (0)
