#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "core/aligned_buffer.h"
#include "core/digest.h"
#include "core/hash_as_read.h"
#include "io/data_read.h"
#include "io/direct_io.h"
#include "io/extents.h"
#include "io/page_cache.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 4 * 1024 * 1024;
constexpr uint64_t kPiece = 1024 * 1024;

// A 4 MiB range of a sparse file: data in its second and fourth MiB, holes elsewhere, nothing
// of it cached; and what reading it must give.
struct SparseBlock {
  std::string path;
  UniqueFd fd;
  UniqueFd direct;
  ExtentMap extents;
  std::vector<uint8_t> expected = std::vector<uint8_t>(kBlock, 0);

  explicit SparseBlock(const TempDir& dir) : path(dir / "img") {
    make_sparse_file(path, kBlock);
    for (uint64_t at : {kPiece, 3 * kPiece}) {
      const auto data = pattern(kPiece, static_cast<uint8_t>(at / kPiece));
      write_bytes(path, at, data);
      std::copy(data.begin(), data.end(), expected.begin() + static_cast<ptrdiff_t>(at));
    }
    fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ::fdatasync(fd.get());
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
    direct = open_direct_twin(fd.get());
    extents = ExtentMap::scan(fd.get(), kBlock, path);
  }

  // Reads the block the way a scan or a rollback does, with the direct twin when `use_direct`.
  std::vector<uint8_t> read(bool use_direct, uint64_t& bytes_read) const {
    AlignedBuffer buf(kBlock);
    std::fill(buf.data(), buf.data() + kBlock, uint8_t{0xee});  // holes must be written over
    const auto cached_before = resident_pages(fd.get(), 0, kBlock);
    bytes_read = read_data_range(fd.get(), use_direct && direct ? direct.get() : -1, extents.overlapping(0, kBlock), 0, kBlock,
                                 buf.data(), cached_before, path);
    return std::vector<uint8_t>(buf.data(), buf.data() + kBlock);
  }

  // Reads the block through the cache in pieces, hashing each as it is filled, the way a scan
  // does; `fills` gets each length reported.
  Digest read_hashing(std::vector<uint8_t>& content, std::vector<size_t>& fills) const {
    AlignedBuffer buf(kBlock);
    std::fill(buf.data(), buf.data() + kBlock, uint8_t{0xee});
    HashAsRead hash(buf.data(), 0);
    read_data_range(fd.get(), -1, extents.overlapping(0, kBlock), 0, kBlock, buf.data(), resident_pages(fd.get(), 0, kBlock), path,
                    [&](size_t n) {
                      fills.push_back(n);
                      hash.filled(n);
                    });
    content.assign(buf.data(), buf.data() + kBlock);
    std::vector<Digest> marks;
    return hash.finish(marks);
  }
};

}  // namespace

TEST(data_read_gives_the_extents_bytes_and_zeros_for_the_holes) {
  TempDir dir;
  SparseBlock b(dir);
  uint64_t read = 0;
  CHECK(b.read(false, read) == b.expected);
  CHECK_EQ(read, 2 * kPiece);
}

TEST(data_read_of_an_uncached_range_with_a_direct_twin_gives_the_same_bytes_and_caches_nothing) {
  TempDir dir;
  SparseBlock b(dir);
  if (!b.direct) return;  // no direct reads on this filesystem or host: nothing to check
  uint64_t read = 0;
  CHECK(b.read(true, read) == b.expected);
  CHECK_EQ(read, 2 * kPiece);
  CHECK_EQ(resident_count(resident_pages(b.fd.get(), 0, kBlock)), size_t{0});
}

TEST(data_read_of_a_partly_cached_range_reads_through_the_cache) {
  TempDir dir;
  SparseBlock b(dir);
  if (!b.direct) return;
  uint8_t one[4096];
  REQUIRE(::pread(b.fd.get(), one, sizeof one, static_cast<off_t>(kPiece)) == static_cast<ssize_t>(sizeof one));
  uint64_t read = 0;
  CHECK(b.read(true, read) == b.expected);
  // Read through the cache, the data pages are now resident; a direct read would have left
  // only the one page read above.
  CHECK(resident_count(resident_pages(b.fd.get(), 0, kBlock)) > 1);
}

TEST(data_read_in_pieces_reports_growing_prefixes_and_hashes_like_a_one_shot_digest) {
  TempDir dir;
  SparseBlock b(dir);
  std::vector<uint8_t> content;
  std::vector<size_t> fills;
  CHECK(b.read_hashing(content, fills) == sha256(b.expected.data(), kBlock));
  CHECK(content == b.expected);
  REQUIRE(!fills.empty());
  CHECK(std::is_sorted(fills.begin(), fills.end()));
  CHECK_EQ(fills.back(), kBlock);
  // Each of the two data extents is read a piece at a time.
  CHECK(fills.size() >= 2 * (kPiece / kFillPiece));
}

TEST(data_read_in_pieces_of_a_file_truncated_after_its_extents_were_mapped_reads_the_rest_as_zeros) {
  TempDir dir;
  SparseBlock b(dir);
  // Mid-piece in the last data extent: that piece's read comes back short, the rest reads nothing.
  const uint64_t cut = 3 * kPiece + kFillPiece + 1000;
  REQUIRE(::truncate(b.path.c_str(), static_cast<off_t>(cut)) == 0);
  std::fill(b.expected.begin() + static_cast<ptrdiff_t>(cut), b.expected.end(), uint8_t{0});
  std::vector<uint8_t> content;
  std::vector<size_t> fills;
  CHECK(b.read_hashing(content, fills) == sha256(b.expected.data(), kBlock));
  CHECK(content == b.expected);
  CHECK_EQ(fills.back(), kBlock);
}
