#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/block_reader.h"
#include "core/scan_image.h"
#include "core/store_layout.h"
#include "formats/block_source.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 64 * 1024;

Digest digest_at(const ScanResult& r, uint64_t i) {
  Digest d;
  std::memcpy(d.data(), r.digests.data() + i * kDigestSize, kDigestSize);
  return d;
}

struct ScannedABA {
  std::vector<uint8_t> a;
  ScanParams params;
  ScanResult first;
};

// dir/img holds blocks a, b, a (pattern seeds `seed`, `seed + 1`): a block twice, stored and
// repaired once. Scanned into dir's store.
ScannedABA scanned_a_b_a(const TempDir& dir, uint8_t seed) {
  const std::string img = dir / "img";
  make_sparse_file(img, 3 * kBlock);
  const auto a = pattern(kBlock, seed), b = pattern(kBlock, static_cast<uint8_t>(seed + 1));
  write_bytes(img, 0, a);
  write_bytes(img, 1 * kBlock, b);
  write_bytes(img, 2 * kBlock, a);
  JobControl control;
  ScanParams p{.image_path = img, .store_dir = dir.path(), .block_size = kBlock, .threads = 2};
  ScanResult first = scan_image(p, control, nullptr);
  return {a, p, std::move(first)};
}

}  // namespace

TEST(scan_hashes_data_skips_holes_and_stores_new_blocks) {
  TempDir dir;
  const std::string img = dir / "img";
  make_sparse_file(img, 5 * kBlock + 1000);                       // short last block
  const auto a = pattern(kBlock, 1), tail = pattern(1000, 2);
  write_bytes(img, 1 * kBlock, a);                                // block 1: data
  write_bytes(img, 2 * kBlock + 4096, pattern(4096, 3));          // block 2: partial
  write_bytes(img, 3 * kBlock, std::vector<uint8_t>(kBlock, 0));  // block 3: written zeros
  write_bytes(img, 5 * kBlock, tail);                             // block 5: short

  JobControl control;
  ScanParams p{.image_path = img, .store_dir = dir.path(), .block_size = kBlock, .threads = 2};
  const ScanResult r = scan_image(p, control, nullptr);
  CHECK_EQ(r.block_count, 6u);
  CHECK(is_zero_digest(digest_at(r, 0)));
  CHECK(digest_at(r, 1) == sha256(a.data(), a.size()));
  std::vector<uint8_t> partial(kBlock, 0);
  const auto p3 = pattern(4096, 3);
  std::memcpy(partial.data() + 4096, p3.data(), p3.size());
  CHECK(digest_at(r, 2) == sha256(partial.data(), partial.size()));
  CHECK(is_zero_digest(digest_at(r, 3)));
  CHECK(is_zero_digest(digest_at(r, 4)));
  CHECK(digest_at(r, 5) == sha256(tail.data(), tail.size()));
  CHECK_EQ(r.zero_blocks, 3u);
  CHECK_EQ(r.blocks_written, 3u);
  CHECK_EQ(r.bytes_written, 2 * kBlock + 1000);
  CHECK_EQ(r.written_digests.size(), 3 * kDigestSize);
  CHECK(r.bytes_read <= 3 * kBlock + 1000 + 2 * 4096);  // holes are not read
  CHECK(read_file(block_file_path(dir.path(), digest_at(r, 5))).size() == kBlockHeaderSize + 1000);
  CHECK_EQ(control.done(), r.progress_total);

  ScanParams again = p;
  again.parent_digests = r.digests;
  CHECK_EQ(scan_image(again, control, nullptr).blocks_written, 0u);
}

TEST(scan_progress_counts_the_data_bytes_not_the_virtual_size) {
  TempDir dir;
  const std::string img = dir / "img";
  make_sparse_file(img, 64 * kBlock);
  write_bytes(img, 62 * kBlock, pattern(2 * kBlock, 4));  // the data sits at the end
  JobControl control;
  std::vector<std::pair<uint64_t, uint64_t>> reports;
  const ScanResult r = scan_image({.image_path = img, .store_dir = dir.path(), .block_size = kBlock, .threads = 1}, control,
                                  [&](uint64_t done, uint64_t total) { reports.emplace_back(done, total); });
  CHECK_EQ(r.progress_total, 2 * kBlock);
  CHECK_EQ(control.done(), 2 * kBlock);
  for (const auto& [done, total] : reports) {
    CHECK_EQ(total, 2 * kBlock);
    CHECK(done <= total);
  }
}

TEST(a_raw_source_weighs_a_hole_nothing_and_data_by_its_bytes) {
  TempDir dir;
  const std::string img = dir / "img";
  make_sparse_file(img, 64 * kBlock);
  write_bytes(img, 62 * kBlock, pattern(2 * kBlock, 4));
  const std::unique_ptr<BlockSource> source = open_raw_source(img);
  // So a scan of this image reports nothing done before it reaches the data, and half once it
  // has read one of the two data blocks.
  CHECK_EQ(source->data_bytes(0, 62 * kBlock), 0u);
  CHECK_EQ(source->data_bytes(62 * kBlock, kBlock), kBlock);
  CHECK_EQ(source->data_bytes(61 * kBlock + 100, kBlock), 100u);
  CHECK_EQ(source->data_bytes(0, 64 * kBlock), 2 * kBlock);
}

TEST(scan_of_an_empty_image_has_no_blocks) {
  TempDir dir;
  make_sparse_file(dir / "img", 0);
  JobControl control;
  const ScanResult r = scan_image({.image_path = dir / "img", .store_dir = dir.path(), .block_size = kBlock}, control, nullptr);
  CHECK_EQ(r.block_count, 0u);
  CHECK(r.digests.empty());
}

TEST(scan_stops_with_cancelled) {
  TempDir dir;
  write_bytes(dir / "img", 0, pattern(16 * kBlock, 4));
  JobControl control;
  control.cancel();
  CHECK_THROWS_CODE(scan_image({.image_path = dir / "img", .store_dir = dir.path(), .block_size = kBlock}, control, nullptr),
                    ErrorCode::Cancelled);
}

// The engine frees the blocks of a snapshot that is not committed: a cancelled scan must name
// every block file it created, including those still being stored when it stopped.
TEST(scan_cancelled_midway_names_the_block_files_it_created) {
  TempDir dir;
  write_bytes(dir / "img", 0, pattern(512 * kBlock, 5));
  const auto block_files = [&] {
    uint64_t n = 0;
    for (const auto& fanout : std::filesystem::directory_iterator(dir.path()))
      if (fanout.is_directory() && fanout.path().filename() != "tmp")
        for (const auto& f : std::filesystem::directory_iterator(fanout.path())) n += f.is_regular_file() ? 1 : 0;
    return n;
  };
  JobControl control;
  std::atomic<bool> finished{false};
  std::thread canceller([&] {
    while (!finished && block_files() < 8) std::this_thread::sleep_for(std::chrono::microseconds(200));
    control.cancel();
  });
  std::vector<uint8_t> written;
  bool cancelled = false;
  try {
    (void)scan_image({.image_path = dir / "img", .store_dir = dir.path(), .block_size = kBlock, .threads = 1}, control, nullptr);
  } catch (const Error& e) {
    cancelled = e.code() == ErrorCode::Cancelled;
    written = e.written_digests;
  }
  finished = true;
  canceller.join();
  CHECK(cancelled);
  CHECK(written.size() >= 8 * kDigestSize);
  CHECK_EQ(written.size() % kDigestSize, 0u);
  CHECK_EQ(block_files(), written.size() / kDigestSize);
  for (size_t o = 0; o < written.size(); o += kDigestSize) {
    Digest d;
    std::memcpy(d.data(), written.data() + o, kDigestSize);
    CHECK(std::filesystem::exists(block_file_path(dir.path(), d)));
  }
}

TEST(scan_reports_missing_images_and_directories) {
  TempDir dir;
  JobControl control;
  CHECK_THROWS_CODE(scan_image({.image_path = dir / "nope", .store_dir = dir.path(), .block_size = kBlock}, control, nullptr),
                    ErrorCode::ImageNotFound);
  CHECK_THROWS_CODE(scan_image({.image_path = dir.path(), .store_dir = dir.path(), .block_size = kBlock}, control, nullptr),
                    ErrorCode::NotAnImage);
}

// Unchanged cached blocks are hashed in place; a changed one must still be stored under the
// digest of the bytes stored, which the store's own check proves on reading it back.
TEST(scan_of_a_cached_image_stores_a_changed_block_under_the_digest_of_its_bytes) {
  TempDir dir;
  const std::string img = dir / "img";
  for (uint8_t b = 0; b < 8; ++b) write_bytes(img, b * kBlock, pattern(kBlock, static_cast<uint8_t>(10 + b)));
  JobControl control;
  ScanParams p{.image_path = img, .store_dir = dir.path(), .block_size = kBlock, .threads = 2};
  const ScanResult base = scan_image(p, control, nullptr);
  const auto changed = pattern(kBlock, 99);
  write_bytes(img, 3 * kBlock, changed);
  (void)read_file(img);  // every page cached

  p.parent_digests = base.digests;
  const ScanResult r = scan_image(p, control, nullptr);
  CHECK_EQ(r.blocks_written, 1u);
  CHECK(digest_at(r, 3) == sha256(changed.data(), changed.size()));
  for (uint64_t i = 0; i < 8; ++i)
    if (i != 3) CHECK(digest_at(r, i) == digest_at(base, i));
  AlignedBuffer buf(kBlock);
  CHECK_EQ(read_block(dir.path(), digest_at(r, 3), buf), kBlock);
  CHECK(std::memcmp(buf.data(), changed.data(), kBlock) == 0);
}

TEST(scan_hash_only_of_a_cached_image_gives_the_digests_of_a_storing_scan) {
  TempDir dir;
  const std::string img = dir / "img";
  make_sparse_file(img, 6 * kBlock);
  write_bytes(img, 0, pattern(2 * kBlock, 20));
  write_bytes(img, 3 * kBlock, std::vector<uint8_t>(kBlock, 0));  // written zeros: ZERO
  write_bytes(img, 4 * kBlock + 4096, pattern(4096, 21));         // partly hole
  JobControl control;
  ScanParams p{.image_path = img, .store_dir = dir.path(), .block_size = kBlock, .threads = 2};
  const ScanResult stored = scan_image(p, control, nullptr);
  (void)read_file(img);
  p.write_blocks = false;
  const ScanResult hashed = scan_image(p, control, nullptr);
  CHECK(hashed.digests == stored.digests);
  CHECK_EQ(hashed.zero_blocks, stored.zero_blocks);
}

TEST(scan_rewrites_a_damaged_block_even_where_it_equals_the_parent) {
  TempDir dir;
  const auto [a, p, first] = scanned_a_b_a(dir, 11);
  JobControl control;
  const Digest da = digest_at(first, 0);
  const std::string path = block_file_path(dir.path(), da);
  std::vector<uint8_t> bad = a;
  bad[100] ^= 0x80;
  write_bytes(path, kBlockHeaderSize, bad);
  AlignedBuffer buf;
  CHECK_THROWS_CODE(read_block(dir.path(), da, buf), ErrorCode::DigestMismatch);

  // Unchanged since the parent: without the mark the file, being there, is taken as it is.
  ScanParams incremental = p;
  incremental.parent_digests = first.digests;
  const ScanResult unmarked = scan_image(incremental, control, nullptr);
  CHECK_EQ(unmarked.blocks_written, 0u);
  CHECK(unmarked.repaired_digests.empty());
  CHECK_THROWS_CODE(read_block(dir.path(), da, buf), ErrorCode::DigestMismatch);

  // Marked damaged: stored again from the image's good bytes, once.
  incremental.damaged_digests.assign(da.begin(), da.end());
  const ScanResult marked = scan_image(incremental, control, nullptr);
  CHECK_EQ(marked.blocks_written, 1u);
  CHECK(marked.repaired_digests == std::vector<uint8_t>(da.begin(), da.end()));
  CHECK(marked.digests == first.digests);
  REQUIRE(read_block(dir.path(), da, buf, {.expected_length = kBlock}) == kBlock);
  CHECK(std::memcmp(buf.data(), a.data(), kBlock) == 0);

  // A hash-only scan writes nothing, marked or not.
  std::vector<uint8_t> again = a;
  again[7] ^= 0x01;
  write_bytes(path, kBlockHeaderSize, again);
  ScanParams hash_only = incremental;
  hash_only.write_blocks = false;
  const ScanResult hashed = scan_image(hash_only, control, nullptr);
  CHECK(hashed.repaired_digests.empty());
  CHECK_THROWS_CODE(read_block(dir.path(), da, buf), ErrorCode::DigestMismatch);
}

TEST(scan_writes_a_missing_block_again_where_it_equals_the_parent) {
  TempDir dir;
  const auto [a, p, first] = scanned_a_b_a(dir, 31);
  JobControl control;
  const Digest da = digest_at(first, 0);
  REQUIRE(std::filesystem::remove(block_file_path(dir.path(), da)));

  // Unchanged since the parent, and not marked: the file is looked for all the same.
  ScanParams incremental = p;
  incremental.parent_digests = first.digests;
  const ScanResult again = scan_image(incremental, control, nullptr);
  CHECK_EQ(again.blocks_written, 1u);
  CHECK(again.digests == first.digests);
  CHECK(again.repaired_digests.empty());
  AlignedBuffer buf;
  REQUIRE(read_block(dir.path(), da, buf, {.expected_length = kBlock}) == kBlock);
  CHECK(std::memcmp(buf.data(), a.data(), kBlock) == 0);

  // Present again: the next scan of the unchanged image writes nothing.
  CHECK_EQ(scan_image(incremental, control, nullptr).blocks_written, 0u);
}

TEST(scan_refuses_an_image_of_more_blocks_than_a_snapshot_holds_before_allocating_for_it) {
  TempDir dir;
  const std::string img = dir.path() + "/big.qcow2";
  std::string out;
  // 9 TiB, 2^27 + 2^24 blocks of 64 KiB, in a file of a few MiB.
  if (run_command("qemu-img create -q -f qcow2 -o cluster_size=2M '" + img + "' 9T", out) != 0)
    throw std::runtime_error("qemu-img create: " + out);
  JobControl control;
  ScanParams p{.image_path = img, .format = ImageFormat::Qcow2, .store_dir = dir.path(), .block_size = kBlock, .threads = 2};
  CHECK_THROWS_CODE(scan_image(p, control, nullptr), ErrorCode::ImageTooLarge);
}
