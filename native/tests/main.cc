#include <cstdio>
#include <cstring>
#include <exception>

#include "tests/harness.h"

namespace harness {

static int failures_in_test = 0;

std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

void fail(const char* file, int line, const std::string& what) {
  ++failures_in_test;
  std::fprintf(stderr, "    %s:%d: %s\n", file, line, what.c_str());
}

}  // namespace harness

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  int run = 0, failed = 0;
  for (const auto& t : harness::registry()) {
    if (filter && !std::strstr(t.name, filter)) continue;
    harness::failures_in_test = 0;
    try {
      t.fn();
    } catch (const harness::Abort&) {
    } catch (const blocksnap::Error& e) {
      harness::fail(__FILE__, __LINE__, std::string("unexpected blocksnap::Error ") + e.code_name() + ": " + e.what());
    } catch (const std::exception& e) {
      harness::fail(__FILE__, __LINE__, std::string("unexpected exception: ") + e.what());
    }
    ++run;
    if (harness::failures_in_test > 0) ++failed;
    std::printf("%s %s\n", harness::failures_in_test > 0 ? "FAIL" : "ok  ", t.name);
  }
  std::printf("%d tests, %d failed\n", run, failed);
  return failed == 0 && run > 0 ? 0 : 1;
}
