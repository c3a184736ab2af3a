#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/block_reader.h"
#include "core/store_layout.h"
#include "io/file_io.h"
#include "io/page_cache.h"
#include "tests/base_snapshot.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"
#include "volume/cow_format.h"
#include "volume/cow_volume.h"
#include "volume/scan_blocks.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 256 * 1024;  // 64 granules per block
constexpr uint64_t kSize = 4 * kBlock;
constexpr uint64_t kG = kCowGranuleSize;

// A snapshot of `content` in the store under dir/blocks: its digests.
std::vector<uint8_t> make_base(const TempDir& dir, const std::vector<uint8_t>& content) { return scan_base(dir, content, kBlock); }

struct Fixture {
  TempDir dir;
  std::vector<uint8_t> content = pattern(kSize, 7);
  std::vector<uint8_t> digests;
  LayerFiles top{dir / "top.data", dir / "top.map"};

  Fixture() {
    std::memset(content.data() + 2 * kBlock, 0, kBlock);  // block 2 is ZERO in the base
    digests = make_base(dir, content);
    create_cow_layer(top, kSize, "layer-1");
  }

  VolumeSpec spec(bool writable) const {
    return {.store_dir = dir / "blocks", .block_size = kBlock, .size_bytes = kSize, .base_digests = digests,
            .layers = {top}, .writable = writable};
  }

  // A writable spec over one version 1 layer (64 KiB granules), as a disk cloned before map
  // version 2 has.
  VolumeSpec v1_spec(const LayerFiles& old) const {
    create_cow_layer(old, kSize, "old", kCowMapVersion1);
    VolumeSpec s = spec(true);
    s.layers = {old};
    return s;
  }

  std::vector<uint8_t> read_all(const CowVolume& v) const {
    std::vector<uint8_t> out(kSize);
    v.read(0, kSize, out.data());
    return out;
  }
};

}  // namespace

TEST(cow_copy_up_of_a_sector_write_fills_the_whole_granule) {
  Fixture f;
  CowVolume v(f.spec(true));
  const auto bytes = pattern(512, 9);
  v.write(kBlock + 8192 + 1024, bytes.data(), bytes.size(), false);

  CHECK_EQ(v.store_bytes_read(), kBlock);  // the base block, verified for the copy-up

  auto expected = f.content;
  std::memcpy(expected.data() + kBlock + 8192 + 1024, bytes.data(), bytes.size());
  CHECK(f.read_all(v) == expected);
  // The top layer holds exactly the one granule: the base bytes around the write plus the write.
  const auto data = read_file(f.top.data_path);
  CHECK(std::memcmp(data.data() + kBlock + 8192, expected.data() + kBlock + 8192, kG) == 0);
  CHECK(allocated_bytes(f.top.data_path) <= 2 * kG);
  CHECK(v.dirty_blocks(1) == std::vector<uint32_t>{1});
}

TEST(cow_aligned_4k_write_reads_nothing_below) {
  Fixture f;
  CowVolume v(f.spec(true));
  const auto bytes = pattern(4096, 9);
  v.write(kBlock + 8192, bytes.data(), bytes.size(), false);
  CHECK_EQ(v.store_bytes_read(), uint64_t{0});
  CHECK(allocated_bytes(f.top.data_path) <= kG);
  auto expected = f.content;
  std::memcpy(expected.data() + kBlock + 8192, bytes.data(), bytes.size());
  CHECK(f.read_all(v) == expected);
  CHECK(v.dirty_blocks(1) == std::vector<uint32_t>{1});
}

// A snapshot reads only the blocks dirty_blocks lists, and keeps the base's digest for the rest: a block
// missed because its only write sits at its edge loses that write from the snapshot.
TEST(cow_write_to_only_a_blocks_first_or_last_granule_marks_that_block_and_no_neighbour) {
  Fixture f;
  CowVolume v(f.spec(true));
  const auto bytes = pattern(kG, 9);
  v.write(kBlock - kG, bytes.data(), bytes.size(), false);  // the last granule of block 0
  v.write(2 * kBlock, bytes.data(), bytes.size(), false);   // the first granule of block 2
  CHECK((v.dirty_blocks(1) == std::vector<uint32_t>{0, 2}));
}

// Disks cloned before map version 2 keep 64 KiB layers until their next snapshot or rollback.
TEST(cow_version_1_layer_copies_up_its_64k_granule_and_persists_it) {
  Fixture f;
  const LayerFiles old{f.dir / "old.data", f.dir / "old.map"};
  VolumeSpec spec = f.v1_spec(old);
  const auto bytes = pattern(4096, 6);
  {
    CowVolume v(spec);
    CHECK(v.write_copies_up(kBlock + kCowGranuleSizeV1 + 8192, 4096));
    v.write(kBlock + kCowGranuleSizeV1 + 8192, bytes.data(), bytes.size(), false);
    CHECK_EQ(v.store_bytes_read(), kBlock);
    CHECK(allocated_bytes(old.data_path) >= kCowGranuleSizeV1);
    v.flush();
  }
  spec.writable = false;
  CowVolume v(spec);
  auto expected = f.content;
  std::memcpy(expected.data() + kBlock + kCowGranuleSizeV1 + 8192, bytes.data(), bytes.size());
  CHECK(f.read_all(v) == expected);
  const auto data = read_file(old.data_path);
  CHECK(std::memcmp(data.data() + kBlock + kCowGranuleSizeV1, expected.data() + kBlock + kCowGranuleSizeV1, kCowGranuleSizeV1) == 0);
  CHECK(v.dirty_blocks(1) == std::vector<uint32_t>{1});
}

TEST(cow_stack_of_a_version_1_layer_under_a_version_2_top_reads_each_byte_from_the_topmost_holder) {
  Fixture f;
  CowVolume v(f.v1_spec({f.dir / "old.data", f.dir / "old.map"}));
  const auto under = pattern(4096, 1);  // copies up 64 KiB of block 0 into the old layer
  v.write(4096, under.data(), under.size(), false);
  v.push_layer(f.top);  // version 2 on top
  const auto over = pattern(4096, 2);
  v.write(8192, over.data(), over.size(), false);  // inside the old layer's granule
  const auto alone = pattern(4096, 3);
  v.write(3 * kBlock + 4096, alone.data(), alone.size(), false);  // over the base only

  auto expected = f.content;
  std::memcpy(expected.data() + 4096, under.data(), under.size());
  std::memcpy(expected.data() + 8192, over.data(), over.size());
  std::memcpy(expected.data() + 3 * kBlock + 4096, alone.data(), alone.size());
  CHECK(f.read_all(v) == expected);
  CHECK(v.dirty_blocks(1) == std::vector<uint32_t>{0});
  CHECK((v.dirty_blocks(2) == std::vector<uint32_t>{0, 3}));
  // The frozen prefix alone: the old layer's write, not the top's.
  auto frozen = f.content;
  std::memcpy(frozen.data() + 4096, under.data(), under.size());
  std::vector<uint8_t> got(kBlock);
  v.source(1)->read(0, kBlock, got.data());
  CHECK(std::memcmp(got.data(), frozen.data(), kBlock) == 0);
}

TEST(cow_bits_reach_the_map_only_at_flush) {
  Fixture f;
  CowVolume v(f.spec(true));
  const auto bytes = pattern(kG, 3);
  v.write(0, bytes.data(), bytes.size(), false);
  {
    CowVolume reopened(f.spec(false));
    CHECK(f.read_all(reopened) == f.content);  // unflushed: the map on disk does not know the write
  }
  v.flush();
  CowVolume reopened(f.spec(false));
  auto expected = f.content;
  std::memcpy(expected.data(), bytes.data(), bytes.size());
  CHECK(f.read_all(reopened) == expected);
}

TEST(cow_lost_map_page_hides_the_write_and_never_exposes_other_data) {
  Fixture f;
  {
    CowVolume v(f.spec(true));
    const auto bytes = pattern(kG, 4);
    v.write(3 * kG, bytes.data(), bytes.size(), false);
    v.flush();
  }
  // The map page as it was before that flush (a write lost in a crash): the data is in .data,
  // yet the volume reads the base there, as it did before the write.
  write_bytes(f.top.map_path, kCowMapHeaderSize, std::vector<uint8_t>(cow_bitmap_bytes(cow_granule_count(kSize)), 0));
  CowVolume v(f.spec(false));
  CHECK(f.read_all(v) == f.content);
}

TEST(cow_torn_map_header_or_size_is_image_corrupt) {
  Fixture f;
  write_bytes(f.top.map_path, kCowVersionOffset, {9, 0});
  CHECK_THROWS_CODE(CowVolume(f.spec(false)), ErrorCode::ImageCorrupt);
  // Version 1 with this layer's 4 KiB granule: the header contradicts itself.
  write_bytes(f.top.map_path, kCowVersionOffset, {kCowMapVersion1, 0});
  CHECK_THROWS_CODE(CowVolume(f.spec(false)), ErrorCode::ImageCorrupt);
  write_bytes(f.top.map_path, kCowVersionOffset, {kCowMapVersion, 0});
  CowVolume ok(f.spec(false));
  CHECK(::truncate(f.top.map_path.c_str(), kCowMapHeaderSize) == 0);
  CHECK_THROWS_CODE(CowVolume(f.spec(false)), ErrorCode::ImageCorrupt);
}

TEST(cow_trim_of_whole_granules_leaves_a_hole) {
  Fixture f;
  CowVolume v(f.spec(true));
  const auto bytes = pattern(4 * kG, 5);
  v.write(0, bytes.data(), bytes.size(), false);
  const uint64_t before = allocated_bytes(f.top.data_path);
  v.zero(kG, 2 * kG, true, false);
  CHECK(allocated_bytes(f.top.data_path) + 2 * kG <= before);

  auto expected = f.content;
  std::memcpy(expected.data(), bytes.data(), bytes.size());
  std::memset(expected.data() + kG, 0, 2 * kG);
  CHECK(f.read_all(v) == expected);
  const auto extents = v.extents(0, kBlock, 1024);
  REQUIRE(extents.size() == 3);
  CHECK(extents[0].length == kG && extents[0].flags == 0);
  CHECK(extents[1].length == 2 * kG && extents[1].flags == kExtentHoleZero);
  CHECK(extents[2].length == kBlock - 3 * kG && extents[2].flags == 0);  // the write's last granule, then the base
}

TEST(cow_base_zero_blocks_are_holes_in_extents) {
  Fixture f;
  CowVolume v(f.spec(false));
  const auto extents = v.extents(0, kSize, 1024);
  REQUIRE(extents.size() == 3);
  CHECK(extents[0].length == 2 * kBlock && extents[0].flags == 0);
  CHECK(extents[1].length == kBlock && extents[1].flags == kExtentHoleZero);
  CHECK(extents[2].length == kBlock && extents[2].flags == 0);
}

TEST(cow_extents_stop_at_the_count_asked_for_each_whole) {
  Fixture f;
  CowVolume v(f.spec(true));
  // Over base block 2 (ZERO): two granules written, then every other one: 63 extents.
  const auto bytes = pattern(2 * kG, 3);
  v.write(2 * kBlock, bytes.data(), bytes.size(), false);
  for (uint64_t g = 3; g < kBlock / kG; g += 2) v.write(2 * kBlock + g * kG, bytes.data(), kG, false);
  const auto all = v.extents(2 * kBlock, kBlock, 1024);
  REQUIRE(all.size() == 63);

  const auto one = v.extents(2 * kBlock, kBlock, 1);
  REQUIRE(one.size() == 1);
  CHECK(one[0].length == 2 * kG && one[0].flags == 0);  // whole: not cut at the first granule
  const auto three = v.extents(2 * kBlock, kBlock, 3);
  REQUIRE(three.size() == 3);
  for (size_t i = 0; i < three.size(); ++i) CHECK(three[i].length == all[i].length && three[i].flags == all[i].flags);
  CHECK(v.extents(2 * kBlock, kBlock, 63).size() == 63);
}

TEST(cow_concurrent_partial_writes_to_shared_granules_all_land) {
  Fixture f;
  CowVolume v(f.spec(true));
  // Eight threads each write every eighth 4 KiB piece of the first two granules at once, so
  // copy-ups of one granule race with each other and with direct writes.
  constexpr size_t kPiece = 4096, kPieces = 2 * kG / kPiece, kThreads = 8;
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&v, t] {
      for (size_t p = t; p < kPieces; p += kThreads) {
        const auto bytes = pattern(kPiece, static_cast<uint8_t>(p + 1));
        v.write(p * kPiece, bytes.data(), bytes.size(), false);
      }
    });
  }
  // Meanwhile reads and flushes run too (under TSan this checks the locking of all four).
  std::atomic<bool> done{false};
  std::thread reader([&] {
    std::vector<uint8_t> buf(2 * kG);
    while (!done.load()) {
      v.read(0, buf.size(), buf.data());
      v.flush();
    }
  });
  for (auto& th : threads) th.join();
  done = true;
  reader.join();
  auto expected = f.content;
  for (size_t p = 0; p < kPieces; ++p) {
    const auto bytes = pattern(kPiece, static_cast<uint8_t>(p + 1));
    std::memcpy(expected.data() + p * kPiece, bytes.data(), kPiece);
  }
  CHECK(f.read_all(v) == expected);
}

namespace {

// Pages of block i's store file in the page cache, and how many it has.
std::pair<size_t, size_t> cached_pages(const Fixture& f, uint64_t i) {
  Digest d;
  std::memcpy(d.data(), &f.digests[i * kDigestSize], kDigestSize);
  const int fd = ::open(block_file_path(f.dir / "blocks", d).c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  struct stat st{};
  REQUIRE(::fstat(fd, &st) == 0);
  const auto pages = resident_pages(fd, 0, static_cast<size_t>(st.st_size));
  ::close(fd);
  return {resident_count(pages), pages.size()};
}

void drop_cached(const Fixture& f, uint64_t i) {
  Digest d;
  std::memcpy(d.data(), &f.digests[i * kDigestSize], kDigestSize);
  const int fd = ::open(block_file_path(f.dir / "blocks", d).c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // clean pages: the store fsynced them
  ::close(fd);
}

}  // namespace

// A snapshot's scan asks for the base blocks it will read ahead of reading them; blocks the
// layers cover whole need none.
TEST(cow_source_prefetches_only_base_blocks_a_read_will_need) {
  Fixture f;
  CowVolume v(f.spec(true));
  const auto whole = pattern(kBlock, 21), small = pattern(4096, 22);
  v.write(0, whole.data(), whole.size(), false);           // block 0: every granule in the top
  v.write(kBlock + kG, small.data(), small.size(), false);  // block 1: one granule copied up
  v.flush();
  drop_cached(f, 0);
  drop_cached(f, 1);
  REQUIRE(cached_pages(f, 1).first < cached_pages(f, 1).second);

  const auto source = v.source(1);
  source->prefetch_base(0);
  source->prefetch_base(1);
  source->prefetch_base(2);  // ZERO in the base: no file
  // WILLNEED only queues the reads.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (cached_pages(f, 1).first < cached_pages(f, 1).second && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK_EQ(cached_pages(f, 1).first, cached_pages(f, 1).second);
  CHECK_EQ(cached_pages(f, 0).first, size_t{0});
}

// A cold base block a snapshot will read most of comes in whole, with one direct read, and
// leaves the page cache as it was.
TEST(cow_source_loads_a_cold_base_block_whole_past_the_page_cache) {
  Fixture f;
  const auto whole = pattern(kBlock, 31), small = pattern(4096, 32);
  {
    CowVolume writer(f.spec(true));
    writer.write(0, whole.data(), whole.size(), false);           // block 0: every granule in the top
    writer.write(kBlock + kG, small.data(), small.size(), false);  // block 1: one granule copied up
    writer.close();
  }
  drop_cached(f, 1);
  CowVolume v(f.spec(false));  // its own cache: the copy-up's verified payload is not in it
  const auto source = v.source(1);
  AlignedBuffer frame(block_frame_size(kBlock));
  uint64_t bytes = 0;
  CHECK(!source->read_framed_direct(0, frame.data(), bytes));  // the layer covers it whole
  CHECK(!source->read_framed_direct(2, frame.data(), bytes));  // ZERO in the base
  if (!source->reads_direct() || !source->read_framed_direct(1, frame.data(), bytes)) return;  // no direct reads here
  CHECK_EQ(cached_pages(f, 1).first, size_t{0});
  std::vector<uint8_t> want(f.content.begin() + kBlock, f.content.begin() + 2 * kBlock);
  std::memcpy(want.data() + kG, small.data(), small.size());
  CHECK(std::memcmp(frame.data() + kBlockHeaderSize, want.data(), kBlock) == 0);
  CHECK(source->base().block_verified(1));
}

TEST(cow_source_load_of_a_damaged_base_block_is_a_digest_mismatch) {
  Fixture f;
  Digest d;
  std::memcpy(d.data(), &f.digests[1 * kDigestSize], kDigestSize);
  const std::string path = block_file_path(f.dir / "blocks", d);
  ::chmod(path.c_str(), 0600);
  write_bytes(path, kBlockHeaderSize + 5000, std::vector<uint8_t>{static_cast<uint8_t>(f.content[kBlock + 5000] ^ 0xff)});
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  ::fdatasync(fd);  // DONTNEED leaves dirty pages
  ::close(fd);
  drop_cached(f, 1);
  CowVolume v(f.spec(false));
  const auto source = v.source(1);
  if (!source->reads_direct()) return;  // no direct reads here: nothing to check
  AlignedBuffer frame(block_frame_size(kBlock));
  uint64_t bytes = 0;
  CHECK_THROWS_CODE(source->read_framed_direct(1, frame.data(), bytes), ErrorCode::DigestMismatch);
}

TEST(cow_snapshot_scan_rewrites_a_damaged_base_block_it_reads_good_bytes_of) {
  Fixture f;
  Digest d;
  std::memcpy(d.data(), &f.digests[1 * kDigestSize], kDigestSize);
  const std::string path = block_file_path(f.dir / "blocks", d);
  write_bytes(path, kBlockHeaderSize + 5000, std::vector<uint8_t>{static_cast<uint8_t>(f.content[kBlock + 5000] ^ 0xff)});
  const std::vector<uint8_t> good(f.content.begin() + kBlock, f.content.begin() + 2 * kBlock);
  {
    CowVolume writer(f.spec(true));
    writer.write(kBlock, good.data(), good.size(), false);  // block 1 rewritten whole with the same bytes
    writer.close();
  }
  CowVolume v(f.spec(false));
  JobControl control;
  ScanBlocksParams p{.store_dir = f.dir / "blocks", .block_size = kBlock, .blocks = {1}, .threads = 1};
  const ScanBlocksResult unmarked = scan_volume_blocks(*v.source(1), p, control, nullptr);
  CHECK(std::memcmp(unmarked.digests.data(), d.data(), kDigestSize) == 0);
  CHECK_EQ(unmarked.blocks_written, 0u);  // equal to the base's: not stored again
  AlignedBuffer buf;
  CHECK_THROWS_CODE(read_block(f.dir / "blocks", d, buf), ErrorCode::DigestMismatch);

  p.damaged_digests.assign(d.begin(), d.end());
  const ScanBlocksResult marked = scan_volume_blocks(*v.source(1), p, control, nullptr);
  CHECK_EQ(marked.blocks_written, 1u);
  CHECK(marked.repaired_digests == std::vector<uint8_t>(d.begin(), d.end()));
  REQUIRE(read_block(f.dir / "blocks", d, buf, {.expected_length = kBlock}) == kBlock);
  CHECK(std::memcmp(buf.data(), good.data(), kBlock) == 0);
}

TEST(cow_pushed_layer_freezes_what_a_source_reads) {
  Fixture f;
  CowVolume v(f.spec(true));
  const auto first = pattern(kG, 11), second = pattern(kG, 12);
  v.write(kBlock, first.data(), first.size(), false);
  const LayerFiles next{f.dir / "next.data", f.dir / "next.map"};
  create_cow_layer(next, kSize, "layer-2");
  v.push_layer(next);
  v.write(kBlock, second.data(), second.size(), false);

  const auto frozen = v.source(1);
  std::vector<uint8_t> got(kBlock);
  CHECK(!frozen->read(kBlock, kBlock, got.data()).zero);
  CHECK(std::memcmp(got.data(), first.data(), kG) == 0);
  CHECK(v.dirty_blocks(1) == std::vector<uint32_t>{1});
  CHECK(frozen->read(2 * kBlock, kBlock, got.data()).zero);  // a base ZERO block untouched above
  v.read(kBlock, kG, got.data());
  CHECK(std::memcmp(got.data(), second.data(), kG) == 0);
}

// A read on the JS thread serves only verified bytes the page cache holds: a base block's first
// touch (which verifies) and cold bytes are left to a pool thread.
TEST(cow_cached_read_serves_only_verified_cached_bytes) {
  Fixture f;
  CowVolume v(f.spec(false));
  std::vector<uint8_t> out(8192);
  CHECK(!v.read_cached(kBlock + 4096, out.size(), out.data()));  // block 1 not verified yet
  v.read(kBlock + 4096, out.size(), out.data());
  std::fill(out.begin(), out.end(), 0);
  if (cachestat_works()) {
    CHECK(v.read_cached(kBlock + 4096, out.size(), out.data()));
    CHECK(std::memcmp(out.data(), f.content.data() + kBlock + 4096, out.size()) == 0);
  }
  CHECK(!v.read_cached(kSize - 10, 20, out.data()));  // out of range: the waiting read reports it
}

TEST(cow_cached_read_refuses_layer_bytes_the_page_cache_lost) {
  Fixture f;
  CowVolume v(f.spec(true));
  const auto bytes = pattern(2 * kG, 8);
  v.write(0, bytes.data(), bytes.size(), false);
  v.flush();
  const int fd = ::open(f.top.data_path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // clean: the flush wrote them
  ::close(fd);
  std::vector<uint8_t> out(4096);
  CHECK(!v.read_cached(4096, out.size(), out.data()));
  v.read(4096, out.size(), out.data());
  if (cachestat_works()) {
    std::fill(out.begin(), out.end(), 0);
    CHECK(v.read_cached(4096, out.size(), out.data()));
    CHECK(std::memcmp(out.data(), bytes.data() + 4096, out.size()) == 0);
  }
}

TEST(cow_write_copies_up_only_into_granules_it_covers_in_part) {
  Fixture f;
  CowVolume v(f.spec(true));
  CHECK(v.write_copies_up(kG + 512, 512));  // part of a granule the top lacks
  CHECK(!v.write_copies_up(kG, kG));        // the whole granule: no read below
  CHECK(!v.write_copies_up(kSize - kG, kG));
  const auto bytes = pattern(512, 5);
  v.write(kG + 512, bytes.data(), bytes.size(), false);
  CHECK(!v.write_copies_up(kG + 1024, 512));  // now in the top
  CHECK(v.write_copies_up(kG + 1024, kG));    // runs into the next granule, in part
  CHECK(v.write_copies_up(kSize, 1));          // out of range: not a batchable write
}

TEST(cow_map_any_set_sees_exactly_the_bits_inside_the_range) {
  TempDir dir;
  const std::string path = dir / "m.map";
  const uint64_t size = 200 * kCowGranuleSize + 100;  // 201 granules: the last word is partial
  CowMap::create(path, size, "m");
  CowMap map(path, size, true);
  CHECK(!map.any_set(0, map.granules()));
  for (uint64_t g : {uint64_t{63}, uint64_t{64}, uint64_t{200}}) map.set(g);
  CHECK(!map.any_set(0, 63));
  CHECK(map.any_set(0, 64));
  CHECK(map.any_set(63, 64));
  CHECK(map.any_set(64, 65));
  CHECK(!map.any_set(65, 200));
  CHECK(map.any_set(65, 201));
  CHECK(map.any_set(200, 1000));  // clipped to the map
  CHECK(!map.any_set(201, 1000));
  CHECK(!map.any_set(70, 70));
}
