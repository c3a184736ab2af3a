#include <sys/stat.h>

#include <cerrno>

#include "core/error.h"
#include "io/durable_dirs.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

mode_t mode_of(const std::string& path) {
  struct stat st;
  CHECK(::stat(path.c_str(), &st) == 0);
  return st.st_mode;
}

}  // namespace

TEST(make_dirs_durably_creates_every_missing_level_with_the_mode) {
  TempDir dir;
  make_dirs_durably(dir / "a/b/c", 0700);
  for (const char* level : {"a", "a/b", "a/b/c"}) {
    CHECK(S_ISDIR(mode_of(dir / level)));
    CHECK_EQ(mode_of(dir / level) & 07777, 0700u);
  }
}

TEST(make_dirs_durably_accepts_a_directory_that_exists) {
  TempDir dir;
  CHECK(::mkdir((dir / "a").c_str(), 0755) == 0);
  make_dirs_durably(dir / "a", 0700);
  CHECK_EQ(mode_of(dir / "a") & 07777, 0755u);
}

TEST(make_dirs_durably_refuses_a_file_in_the_way) {
  TempDir dir;
  make_sparse_file(dir / "f", 0);
  for (const std::string& path : {dir / "f", dir / "f/g"}) {
    try {
      make_dirs_durably(path, 0700);
      CHECK(false);
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::IOError);
      CHECK_EQ(e.sys_errno, ENOTDIR);
      CHECK_EQ(e.path, path);
    }
  }
}
