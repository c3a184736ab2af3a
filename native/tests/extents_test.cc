#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "io/extents.h"
#include "io/unique_fd.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t KiB = 1024, MiB = 1024 * KiB;

std::vector<Extent> extents_of(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd);
  off_t size = ::lseek(fd.get(), 0, SEEK_END);
  return ExtentMap::scan(fd.get(), static_cast<uint64_t>(size), path).extents();
}

}  // namespace

namespace blocksnap {
std::ostream& operator<<(std::ostream& o, const Extent& e) { return o << e.begin << "-" << e.end; }
std::ostream& operator<<(std::ostream& o, const std::vector<Extent>& v) {
  o << "[";
  for (const Extent& e : v) o << " " << e;
  return o << " ]";
}
}  // namespace blocksnap

TEST(extents_of_an_empty_file_are_empty) {
  TempDir dir;
  make_sparse_file(dir / "img", 0);
  CHECK(extents_of(dir / "img").empty());
}

TEST(extents_of_an_all_hole_file_are_empty) {
  TempDir dir;
  make_sparse_file(dir / "img", 64 * MiB);
  CHECK(extents_of(dir / "img").empty());
}

TEST(extents_of_a_file_without_holes_cover_it) {
  TempDir dir;
  write_bytes(dir / "img", 0, pattern(3 * MiB + 5, 1));
  CHECK_EQ(extents_of(dir / "img"), (std::vector<Extent>{{0, 3 * MiB + 5}}));
}

TEST(extents_find_data_between_holes) {
  TempDir dir;
  make_sparse_file(dir / "img", 16 * MiB);
  write_bytes(dir / "img", 1 * MiB, pattern(64 * KiB, 2));
  write_bytes(dir / "img", 8 * MiB, pattern(4 * KiB, 3));
  CHECK_EQ(extents_of(dir / "img"), (std::vector<Extent>{{1 * MiB, 1 * MiB + 64 * KiB}, {8 * MiB, 8 * MiB + 4 * KiB}}));
}

TEST(extents_find_data_at_the_end_and_clip_to_the_file_size) {
  TempDir dir;
  make_sparse_file(dir / "img", 10 * MiB + 100);
  write_bytes(dir / "img", 10 * MiB, pattern(100, 4));
  CHECK_EQ(extents_of(dir / "img"), (std::vector<Extent>{{10 * MiB, 10 * MiB + 100}}));
}

TEST(extents_of_unaligned_data_cover_the_written_bytes) {
  TempDir dir;
  make_sparse_file(dir / "img", 1 * MiB);
  write_bytes(dir / "img", 5000, pattern(10, 5));
  auto e = extents_of(dir / "img");
  REQUIRE(e.size() == 1);
  CHECK(e[0].begin <= 5000 && e[0].end >= 5010);
  CHECK(e[0].end - e[0].begin < 64 * KiB);  // filesystem granularity, not the whole file
}

TEST(extent_map_answers_per_block_questions) {
  TempDir dir;
  const uint64_t bs = 64 * KiB;
  make_sparse_file(dir / "img", 8 * bs);
  write_bytes(dir / "img", 2 * bs + 8 * KiB, pattern(8 * KiB, 6));  // partial block 2
  write_bytes(dir / "img", 4 * bs, pattern(2 * bs, 7));             // blocks 4 and 5 full
  UniqueFd fd(::open((dir / "img").c_str(), O_RDONLY | O_CLOEXEC));
  const ExtentMap map = ExtentMap::scan(fd.get(), 8 * bs, dir / "img");
  CHECK(map.overlapping(0, bs).empty());
  CHECK(map.overlapping(1 * bs, 2 * bs).empty());
  auto partial = map.overlapping(2 * bs, 3 * bs);
  REQUIRE(partial.size() == 1);
  CHECK_EQ(partial[0], (Extent{2 * bs + 8 * KiB, 2 * bs + 16 * KiB}));
  CHECK(map.overlapping(3 * bs, 4 * bs).empty());
  auto full = map.overlapping(5 * bs, 6 * bs);
  REQUIRE(full.size() == 1);
  CHECK(full[0].begin <= 5 * bs && full[0].end >= 6 * bs);
  CHECK(map.overlapping(7 * bs, 8 * bs).empty());
  CHECK_EQ(map.data_bytes(), 8 * KiB + 2 * bs);

  CHECK(!range_has_data(fd.get(), 0, 2 * bs, dir / "img"));
  CHECK(range_has_data(fd.get(), 2 * bs, bs, dir / "img"));
  CHECK(!range_has_data(fd.get(), 6 * bs, 2 * bs, dir / "img"));
  CHECK(!range_has_data(fd.get(), 100 * bs, bs, dir / "img"));  // beyond end of file
}
