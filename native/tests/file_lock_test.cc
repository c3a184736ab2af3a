#include <unistd.h>

#include "io/file_lock.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

TEST(file_lock_excludes_a_second_holder_in_the_same_process) {
  TempDir dir;
  UniqueFd first = lock_file_exclusive(dir / "lock");
  CHECK_THROWS_CODE(lock_file_exclusive(dir / "lock"), ErrorCode::DataDirLocked);
  first.reset();
  UniqueFd second = lock_file_exclusive(dir / "lock");
  CHECK(static_cast<bool>(second));
}

TEST(file_lock_records_the_holder_pid) {
  TempDir dir;
  UniqueFd lock = lock_file_exclusive(dir / "lock");
  const auto bytes = read_file(dir / "lock");
  CHECK_EQ(std::string(bytes.begin(), bytes.end()), std::to_string(::getpid()) + "\n");
}

TEST(directory_lock_holds_when_the_lock_file_is_deleted) {
  TempDir dir;
  UniqueFd held = lock_directory_exclusive(dir.path(), dir / "lock");
  UniqueFd file = lock_file_exclusive(dir / "lock");
  CHECK(::unlink((dir / "lock").c_str()) == 0);
  // The file lock alone would now let a second holder in through a new file of the same name.
  UniqueFd second_file = lock_file_exclusive(dir / "lock");
  CHECK(static_cast<bool>(second_file));
  CHECK_THROWS_CODE(lock_directory_exclusive(dir.path(), dir / "lock"), ErrorCode::DataDirLocked);
  held.reset();
  CHECK(static_cast<bool>(lock_directory_exclusive(dir.path(), dir / "lock")));
}
