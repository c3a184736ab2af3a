// Verification read-ahead (volume/verify_ahead.h): sequential reads of a volume have the base
// blocks after them verified on another thread, random reads do not, and a block it finds
// damaged is never served.
#include <cstring>
#include <vector>

#include "core/block_format.h"
#include "core/granule_file.h"
#include "core/store_layout.h"
#include "io/file_io.h"
#include "tests/base_snapshot.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"
#include "volume/cow_volume.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 1024 * 1024;  // sixteen granules per block
constexpr uint64_t kBlocks = 6;           // all within VerifyAhead::kAheadBytes of block 0
constexpr uint64_t kSize = kBlocks * kBlock;
constexpr uint64_t kG = kGranuleSize;
constexpr uint64_t kRead = 256 * 1024;

struct Store {
  TempDir dir;
  std::vector<uint8_t> content = pattern(kSize, 41);
  std::vector<uint8_t> digests = scan_base(dir, content, kBlock, dir / "granules");

  std::string block_path(uint64_t i) const {
    Digest d;
    std::memcpy(d.data(), &digests[i * kDigestSize], kDigestSize);
    return block_file_path(dir / "blocks", d);
  }
  // A read-only volume over the snapshot, as an export opens it; `granules`: with the granule
  // files the scan wrote.
  std::unique_ptr<CowVolume> open(bool granules = true) const {
    return std::make_unique<CowVolume>(VolumeSpec{.store_dir = dir / "blocks", .granule_dir = granules ? dir / "granules" : "",
                                                  .block_size = kBlock, .size_bytes = kSize, .base_digests = digests});
  }
  // Flips payload byte x of block i: the file keeps its size and header.
  void flip(uint64_t i, uint64_t x) const {
    const auto file = read_file(block_path(i));
    write_bytes(block_path(i), kBlockHeaderSize + x, {static_cast<uint8_t>(file[kBlockHeaderSize + x] ^ 1)});
  }
  bool same(const std::vector<uint8_t>& out, uint64_t offset) const {
    return std::memcmp(out.data(), content.data() + offset, out.size()) == 0;
  }
};

// Two reads of block 0, the second where the first ended: a sequential reader.
void read_start(CowVolume& v) {
  std::vector<uint8_t> out(kRead);
  v.read(0, kRead, out.data());
  v.read(kRead, kRead, out.data());
}

}  // namespace

TEST(verify_ahead_verifies_the_blocks_after_a_sequential_read) {
  Store s;
  auto v = s.open();
  read_start(*v);
  v->wait_for_verify_ahead();
  // The reads' own 8 granules, then every granule of blocks 1 to 5 once.
  CHECK_EQ(v->store_bytes_read(), 2 * kRead + (kBlocks - 1) * kBlock);
  std::vector<uint8_t> out(kRead);
  v->read(3 * kBlock + kG, kRead, out.data());
  CHECK(s.same(out, 3 * kBlock + kG));
  CHECK_EQ(v->store_bytes_read(), 2 * kRead + (kBlocks - 1) * kBlock + kRead);  // read in place, checked before
  if (cachestat_works()) CHECK(v->read_cached(4 * kBlock, kRead, out.data()));
  v->close();
}

TEST(verify_ahead_of_a_volume_without_granule_files_verifies_whole_blocks) {
  Store s;
  auto v = s.open(false);
  read_start(*v);  // block 0 whole, once
  v->wait_for_verify_ahead();
  CHECK_EQ(v->store_bytes_read(), kBlocks * kBlock);
  std::vector<uint8_t> out(kRead);
  v->read(5 * kBlock, kRead, out.data());
  CHECK(s.same(out, 5 * kBlock));
  v->close();
}

TEST(verify_ahead_leaves_random_reads_alone) {
  Store s;
  auto v = s.open();
  std::vector<uint8_t> out(4096);
  v->read(0, out.size(), out.data());
  v->read(4 * kBlock, out.size(), out.data());
  v->read(kBlock + 3 * kG, out.size(), out.data());
  v->wait_for_verify_ahead();
  CHECK_EQ(v->store_bytes_read(), 3 * kG);  // the granule of each read, nothing else
  v->close();
}

TEST(verify_ahead_never_makes_a_damaged_block_readable) {
  Store s;
  s.flip(2, 5 * kG + 11);  // granule 5 of block 2
  auto v = s.open();
  read_start(*v);
  v->wait_for_verify_ahead();
  std::vector<uint8_t> out(kRead);
  CHECK(!v->read_cached(2 * kBlock + 4 * kG, kRead, out.data()));
  CHECK_THROWS_CODE(v->read(2 * kBlock + 4 * kG, kRead, out.data()), ErrorCode::DigestMismatch);
  std::vector<uint8_t> granule(kG);
  CHECK_THROWS_CODE(v->read(2 * kBlock + 5 * kG, kG, granule.data()), ErrorCode::DigestMismatch);
  v->close();
}

TEST(verify_ahead_finding_damage_fails_no_read_that_does_not_touch_it) {
  Store s;
  s.flip(2, 5 * kG + 11);
  auto v = s.open();
  read_start(*v);
  v->wait_for_verify_ahead();
  std::vector<uint8_t> out(kRead);
  v->read(2 * kBlock, kRead, out.data());  // granules 0-3 of the damaged block
  CHECK(s.same(out, 2 * kBlock));
  v->read(2 * kBlock + 6 * kG, kRead, out.data());
  CHECK(s.same(out, 2 * kBlock + 6 * kG));
  for (uint64_t i : {1, 3, 4, 5}) {
    v->read(i * kBlock + kBlock - kRead, kRead, out.data());
    CHECK(s.same(out, i * kBlock + kBlock - kRead));
  }
  v->close();
}

TEST(verify_ahead_in_flight_at_close_stops_with_the_volume) {
  Store s;
  auto v = s.open();
  read_start(*v);
  v->close();  // the thread may be inside a block: close waits for it, then closes the files
  v->wait_for_verify_ahead();  // returns: nothing is left running
  std::vector<uint8_t> out(kRead);
  CHECK(!v->read_cached(3 * kBlock, kRead, out.data()));
  v.reset();
}

TEST(verify_ahead_in_flight_when_a_volume_is_destroyed_unclosed_stops_first) {
  Store s;
  auto v = s.open();
  read_start(*v);
  v.reset();
}
