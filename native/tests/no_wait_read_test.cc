// Reads that must not wait for a disk (io/file_io.h read_cached_at): served from the page cache,
// refused otherwise, and a refusal must not have started a disk read on the calling thread.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "io/file_io.h"
#include "io/page_cache.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr size_t kLen = 256 * 1024;

// A file of kLen pattern bytes, durable, with none of it in the page cache.
std::string cold_file(const TempDir& dir, const std::vector<uint8_t>& bytes, const std::string& name = "f") {
  const std::string path = dir / name;
  write_bytes(path, 0, bytes);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::fdatasync(fd) == 0);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  return path;
}

size_t cached(int fd) { return resident_count(resident_pages(fd, 0, kLen)); }

bool refused(int fd, uint8_t* out, size_t len, uint64_t offset) { return !read_cached_at(fd, out, len, offset); }

// Right after a served read, read_cached_at tries without asking the cache first: a refused read
// of another cold file ends any such run, so that the next read asks.
void after_a_miss(const TempDir& dir) {
  const std::string path = cold_file(dir, pattern(4096, 9), "miss");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  uint8_t out[4096];
  CHECK(refused(fd, out, sizeof out, 0));
  ::close(fd);
}

}  // namespace

TEST(no_wait_read_of_uncached_pages_is_refused_without_reading_them) {
  TempDir dir;
  const auto bytes = pattern(kLen, 3);
  const std::string path = cold_file(dir, bytes);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(cached(fd) == 0);
  std::vector<uint8_t> out(kLen);
  after_a_miss(dir);
  CHECK(refused(fd, out.data(), 4096, 8192));
  // No read-ahead either: the refusal asked the cache before reading.
  if (cachestat_works()) CHECK_EQ(cached(fd), size_t{0});
  // read_at, which may wait, reads the same bytes.
  CHECK_EQ(read_at(fd, out.data(), 4096, 8192, path), size_t{4096});
  CHECK(std::memcmp(out.data(), bytes.data() + 8192, 4096) == 0);
  ::close(fd);
}

TEST(no_wait_read_of_cached_pages_returns_them) {
  TempDir dir;
  const auto bytes = pattern(kLen, 4);
  const std::string path = cold_file(dir, bytes);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::vector<uint8_t> out(kLen);
  REQUIRE(read_at(fd, out.data(), kLen, 0, path) == kLen);  // now cached
  std::memset(out.data(), 0, kLen);
  // Unaligned on purpose: a block file's payload starts 64 bytes into the file.
  if (cachestat_works()) {
    CHECK(!refused(fd, out.data(), 10000, 64));
    CHECK(std::memcmp(out.data(), bytes.data() + 64, 10000) == 0);
  } else {
    CHECK(refused(fd, out.data(), 10000, 64));  // without cachestat nothing is served unwaited
  }
  ::close(fd);
}

TEST(no_wait_read_right_after_a_served_one_still_refuses_uncached_pages) {
  TempDir dir;
  const auto warm_bytes = pattern(kLen, 6);
  const std::string warm = dir / "warm";
  write_bytes(warm, 0, warm_bytes);
  const int warm_fd = ::open(warm.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(warm_fd >= 0);
  std::vector<uint8_t> out(kLen);
  REQUIRE(read_at(warm_fd, out.data(), kLen, 0, warm) == kLen);
  CHECK(read_cached_at(warm_fd, out.data(), 4096, 0));  // served: the next read skips cachestat
  const auto cold_bytes = pattern(kLen, 7);
  const std::string cold = cold_file(dir, cold_bytes);
  const int fd = ::open(cold.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  CHECK(refused(fd, out.data(), 4096, 65536));
  CHECK_EQ(read_at(fd, out.data(), 4096, 65536, cold), size_t{4096});
  CHECK(std::memcmp(out.data(), cold_bytes.data() + 65536, 4096) == 0);
  ::close(fd);
  ::close(warm_fd);
}

TEST(no_wait_read_of_partly_cached_range_is_refused) {
  TempDir dir;
  const auto bytes = pattern(kLen, 5);
  const std::string path = cold_file(dir, bytes);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);  // only what is read comes in
  std::vector<uint8_t> out(kLen);
  REQUIRE(read_at(fd, out.data(), 4096, 0, path) == 4096);
  CHECK(refused(fd, out.data(), 3 * 4096, 0));
  ::close(fd);
}

TEST(no_wait_read_past_the_end_is_refused) {
  TempDir dir;
  const auto bytes = pattern(kLen, 6);
  const std::string path = cold_file(dir, bytes);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::vector<uint8_t> out(kLen);
  REQUIRE(read_at(fd, out.data(), kLen, 0, path) == kLen);
  // All it holds is cached, but fewer bytes than asked: left to read_at, which reports short reads.
  CHECK(refused(fd, out.data(), 8192, kLen - 4096));
  ::close(fd);
}

TEST(open_cached_opens_a_path_the_kernel_has_resolved) {
  TempDir dir;
  write_bytes(dir / "g", 0, pattern(16, 1));
  const int fd = open_cached((dir / "g").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    CHECK(errno == ENOSYS);  // a kernel without openat2; anything else would be a bug here
    return;
  }
  CHECK(fd >= 0);
  ::close(fd);
  CHECK_EQ(open_cached((dir / "missing").c_str(), O_RDONLY | O_CLOEXEC), -1);
}
