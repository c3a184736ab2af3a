#include <fcntl.h>
#include <unistd.h>

#include "io/page_cache.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

// Large enough that each half spans whole folios: the kernel caches files in folios of up to
// 2 MiB and drops only folios a range covers entirely.
constexpr size_t kLen = 8 * 1024 * 1024;


// A file of kLen bytes, written back to disk (only clean pages can be dropped) and read once so
// every page is cached.
int cached_file(const TempDir& dir) {
  const std::string path = dir / "f";
  write_bytes(path, 0, pattern(kLen, 9));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ::fdatasync(fd);
  std::vector<uint8_t> buf(kLen);
  (void)!::pread(fd, buf.data(), kLen, 0);
  return fd;
}

}  // namespace

TEST(page_cache_reports_one_entry_per_page_and_nothing_for_an_unaligned_range) {
  TempDir dir;
  const int fd = cached_file(dir);
  const auto v = resident_pages(fd, 0, kLen);
  CHECK_EQ(v.size(), kLen / static_cast<size_t>(::sysconf(_SC_PAGESIZE)));
  CHECK_EQ(resident_count(v), v.size());
  CHECK(resident_pages(fd, 100, 4096).empty());
  ::close(fd);
}

TEST(page_cache_keeps_pages_that_were_resident_before) {
  TempDir dir;
  const int fd = cached_file(dir);
  const auto before = resident_pages(fd, 0, kLen);
  drop_pages_not_resident(fd, 0, kLen, before);
  CHECK_EQ(resident_count(resident_pages(fd, 0, kLen)), before.size());
  ::close(fd);
}

TEST(page_cache_drops_only_the_pages_that_were_not_resident_before) {
  TempDir dir;
  const int fd = cached_file(dir);
  auto before = resident_pages(fd, 0, kLen);
  REQUIRE(!before.empty());
  for (size_t i = before.size() / 2; i < before.size(); ++i) before[i] = 0;  // "read by the scan"
  drop_pages_not_resident(fd, 0, kLen, before);
  const auto after = resident_pages(fd, 0, kLen);
  CHECK_EQ(resident_count(after), before.size() / 2);
  CHECK(after.front() & 1);
  CHECK(!(after.back() & 1));
  ::close(fd);
}

TEST(page_cache_keeper_uses_the_residency_of_the_first_touch) {
  TempDir dir;
  const int fd = cached_file(dir);
  PageCacheKeeper keeper(fd);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  ::posix_fadvise(fd, 0, kLen, POSIX_FADV_DONTNEED);
  keeper.touch(0, kLen);  // nothing cached at the first touch
  std::vector<uint8_t> buf(kLen);
  (void)!::pread(fd, buf.data(), kLen, 0);  // now everything is, as after read-ahead
  const auto before = keeper.before_read(0, kLen);
  CHECK_EQ(before.size(), kLen / page);
  CHECK_EQ(resident_count(before), 0u);
  keeper.after_read(0, kLen, before);
  CHECK_EQ(resident_count(resident_pages(fd, 0, kLen)), 0u);
  ::close(fd);
}
