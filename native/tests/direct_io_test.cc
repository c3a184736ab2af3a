#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "core/aligned_buffer.h"
#include "io/direct_io.h"
#include "io/file_io.h"
#include "io/page_cache.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr size_t kLen = 4 * 1024 * 1024;

// A file holding `data` on disk with none of it in the page cache, and its direct twin (empty
// when this filesystem or kernel has no direct reads: the tests then have nothing to check).
struct UncachedFile {
  UniqueFd fd;
  UniqueFd direct;
  AlignedBuffer buf{kLen};
  size_t got = 0;

  UncachedFile(const TempDir& dir, const std::vector<uint8_t>& data) {
    const std::string path = dir / "f";
    write_bytes(path, 0, data);
    fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ::fdatasync(fd.get());
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
    direct = open_direct_twin(fd.get());
  }

  bool read(size_t len, uint64_t offset, size_t buf_offset = 0) {
    return read_direct(direct.get(), buf.data() + buf_offset, len, offset, "f", got);
  }
};


}  // namespace

TEST(direct_read_returns_the_bytes_of_the_file) {
  TempDir dir;
  const auto data = pattern(kLen, 5);
  UncachedFile f(dir, data);
  if (!f.direct) return;
  REQUIRE(f.read(kLen, 0));
  CHECK_EQ(f.got, kLen);
  CHECK(std::equal(data.begin(), data.end(), f.buf.data()));
}

TEST(direct_read_brings_nothing_into_the_page_cache) {
  TempDir dir;
  UncachedFile f(dir, pattern(kLen, 6));
  if (!f.direct) return;
  REQUIRE(f.read(kLen, 0));
  CHECK_EQ(resident_count(resident_pages(f.fd.get(), 0, kLen)), size_t{0});
}

TEST(direct_read_declines_an_unaligned_range_for_a_buffered_read) {
  TempDir dir;
  UncachedFile f(dir, pattern(kLen, 7));
  if (!f.direct) return;
  CHECK(!f.read(4096, 100));
  CHECK(!f.read(4096, 0, 1));
}

TEST(direct_read_stops_short_at_the_end_of_the_file) {
  TempDir dir;
  const auto data = pattern(kLen - 100, 8);
  UncachedFile f(dir, data);
  if (!f.direct) return;
  REQUIRE(f.read(kLen, 0));
  CHECK_EQ(f.got, kLen - 100);
  CHECK(std::equal(data.begin(), data.end(), f.buf.data()));
}

namespace {

// A new empty file and a block-sized aligned buffer to write into it.
struct NewFile {
  TempDir dir;
  std::string path = dir / "w";
  UniqueFd fd{::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600)};
  AlignedBuffer buf{kLen};
};

}  // namespace

TEST(direct_write_puts_the_bytes_in_the_file_and_leaves_later_writes_buffered) {
  NewFile f;
  REQUIRE(f.fd);
  const auto data = pattern(kLen, 41);
  std::copy(data.begin(), data.end(), f.buf.data());
  if (!write_direct(f.fd.get(), f.buf.data(), kLen, 0, f.path)) return;  // no O_DIRECT on this filesystem: nothing to check
  CHECK_EQ(resident_count(resident_pages(f.fd.get(), 0, kLen)), size_t{0});
  CHECK((::fcntl(f.fd.get(), F_GETFL) & O_DIRECT) == 0);
  const std::vector<uint8_t> tail = pattern(100, 42);
  write_at(f.fd.get(), tail.data(), tail.size(), kLen + 3, f.path);  // unaligned: would fail with O_DIRECT left on
  std::vector<uint8_t> got(kLen + 103);
  REQUIRE(read_at(f.fd.get(), got.data(), got.size(), 0, f.path) == got.size());
  CHECK(std::equal(data.begin(), data.end(), got.begin()));
  CHECK(std::equal(tail.begin(), tail.end(), got.begin() + kLen + 3));
}

TEST(direct_write_declines_an_unaligned_request_and_writes_nothing) {
  NewFile f;
  REQUIRE(f.fd);
  CHECK(!write_direct(f.fd.get(), f.buf.data(), kLen - 64, 0, f.path));
  CHECK(!write_direct(f.fd.get(), f.buf.data() + 64, 4096, 0, f.path));
  CHECK(!write_direct(f.fd.get(), f.buf.data(), 4096, 64, f.path));
  struct stat st{};
  REQUIRE(::fstat(f.fd.get(), &st) == 0);
  CHECK_EQ(st.st_size, off_t{0});
}

TEST(direct_write_through_a_writable_twin_puts_the_bytes_in_the_file_past_the_cache) {
  NewFile f;
  REQUIRE(f.fd);
  const UniqueFd twin = open_direct_twin(f.fd.get(), true);
  if (!twin) return;  // no direct I/O on this filesystem or host: nothing to check
  const auto data = pattern(kLen, 43);
  std::copy(data.begin(), data.end(), f.buf.data());
  REQUIRE(write_direct(f.fd.get(), f.buf.data(), kLen, kLen, f.path, twin.get()));
  CHECK_EQ(resident_count(resident_pages(f.fd.get(), kLen, kLen)), size_t{0});
  CHECK((::fcntl(f.fd.get(), F_GETFL) & O_DIRECT) == 0);  // the caller's own fd is left alone
  std::vector<uint8_t> got(kLen);
  REQUIRE(read_at(f.fd.get(), got.data(), got.size(), kLen, f.path) == got.size());
  CHECK(got == data);
}
