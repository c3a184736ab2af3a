#include <fcntl.h>
#include <unistd.h>

#include "core/digest.h"
#include "core/hash_in_place.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr size_t kLen = 256 * 1024;

int open_read(const std::string& path) { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }

}  // namespace

TEST(hash_in_place_gives_the_sha256_of_the_range) {
  TempDir dir;
  const std::vector<uint8_t> data = pattern(2 * kLen, 4);
  write_bytes(dir / "f", 0, data);
  const int fd = open_read(dir / "f");
  const auto h = hash_in_place(fd, kLen, kLen);
  REQUIRE(h.has_value());
  CHECK(!h->zero);
  CHECK(h->digest == sha256(data.data() + kLen, kLen));
  ::close(fd);
}

TEST(hash_in_place_reports_an_all_zero_range_without_a_digest) {
  TempDir dir;
  write_bytes(dir / "f", 0, std::vector<uint8_t>(kLen, 0));
  const int fd = open_read(dir / "f");
  const auto h = hash_in_place(fd, 0, kLen);
  REQUIRE(h.has_value());
  CHECK(h->zero);
  ::close(fd);
}

TEST(hash_in_place_refuses_an_unaligned_offset) {
  TempDir dir;
  write_bytes(dir / "f", 0, pattern(kLen, 5));
  const int fd = open_read(dir / "f");
  CHECK(!hash_in_place(fd, 100, 4096).has_value());
  ::close(fd);
}

// The mapping reaches past the end of the file, as it does when the image is truncated while a
// block is hashed: the access faults (SIGBUS), and the call reports the range as not hashable
// instead of killing the process.
TEST(hash_in_place_survives_a_file_shorter_than_the_range) {
  TempDir dir;
  write_bytes(dir / "f", 0, pattern(8192, 6));
  const int fd = open_read(dir / "f");
  CHECK(!hash_in_place(fd, 0, kLen).has_value());
  // The thread goes on hashing normally afterwards.
  const auto h = hash_in_place(fd, 0, 8192);
  REQUIRE(h.has_value());
  CHECK(h->digest == sha256(pattern(8192, 6).data(), 8192));
  ::close(fd);
}

TEST(in_place_odds_stop_trying_where_most_blocks_differ_but_keep_probing) {
  InPlaceOdds odds;
  for (uint64_t i = 1; i <= 8; ++i) {
    CHECK(odds.worth_trying(i));
    odds.record(false);
  }
  CHECK(!odds.worth_trying(9));
  CHECK(odds.worth_trying(64));  // a probe
}

TEST(in_place_odds_keep_trying_while_most_blocks_are_unchanged) {
  InPlaceOdds odds;
  for (uint64_t i = 1; i <= 100; ++i) {
    CHECK(odds.worth_trying(i));
    odds.record(i % 20 != 0);  // 1 in 20 changed
  }
}

TEST(in_place_speed_prefers_in_place_until_both_paths_are_timed) {
  InPlaceSpeed s;
  CHECK(s.prefer_in_place());
  s.record(true, 9'000'000, 4 << 20);  // in place timed, copy not yet
  CHECK(s.prefer_in_place());
}

TEST(in_place_speed_takes_the_faster_path_and_probes_the_other) {
  InPlaceSpeed s;
  s.record(true, 3'000'000, 4 << 20);
  s.record(false, 2'000'000, 4 << 20);  // copying is faster per byte
  CHECK(!s.prefer_in_place());
  int in_place = 0;
  for (uint64_t i = 0; i < 64; ++i) in_place += s.use_in_place(i) ? 1 : 0;
  CHECK_EQ(in_place, 4);  // every 16th block still tries in place
  s.record(true, 1'000'000, 12 << 20);  // in place got cheaper: 4 ms for 16 MiB against 2 ms for 4 MiB
  CHECK(s.prefer_in_place());
  in_place = 0;
  for (uint64_t i = 0; i < 64; ++i) in_place += s.use_in_place(i) ? 1 : 0;
  CHECK_EQ(in_place, 60);  // and every 16th block is copied, to keep timing the copy
}
