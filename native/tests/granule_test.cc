#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "core/block_format.h"
#include "core/block_writer.h"
#include "core/store_layout.h"
#include "tests/base_snapshot.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"
#include "core/granule_file.h"
#include "volume/cow_volume.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 1024 * 1024;  // sixteen granules per block
constexpr uint64_t kSize = 3 * kBlock + 5000;  // the last block (and its last granule) is short
constexpr uint64_t kG = kGranuleSize;

Digest digest_at(const std::vector<uint8_t>& digests, uint64_t i) {
  Digest d;
  std::memcpy(d.data(), &digests[i * kDigestSize], kDigestSize);
  return d;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

struct Store {
  TempDir dir;
  std::vector<uint8_t> content = pattern(kSize, 21);
  std::vector<uint8_t> digests;
  std::string blocks = dir / "blocks";
  std::string granules = dir / "granules";

  explicit Store(bool scan_writes_granules = false)
      : digests(scan_base(dir, content, kBlock, scan_writes_granules ? dir / "granules" : std::string())) {}

  // A fresh volume over the base with one writable layer, as a new clone of it is.
  std::unique_ptr<CowVolume> clone(const std::string& name, bool background_verify = false) const {
    const LayerFiles top{dir / (name + ".data"), dir / (name + ".map")};
    create_cow_layer(top, kSize, name);
    return std::make_unique<CowVolume>(VolumeSpec{.store_dir = blocks, .granule_dir = granules, .block_size = kBlock,
                                                  .size_bytes = kSize, .base_digests = digests, .layers = {top}, .writable = true,
                                                  .background_verify = background_verify});
  }

  std::string granule_path(uint64_t i) const { return granule_file_path(granules, digest_at(digests, i)); }
  std::string block_path(uint64_t i) const { return block_file_path(blocks, digest_at(digests, i)); }

  std::vector<uint8_t> expected_with(uint64_t offset, const std::vector<uint8_t>& bytes) const {
    auto out = content;
    std::memcpy(out.data() + offset, bytes.data(), bytes.size());
    return out;
  }
};

std::vector<uint8_t> read_all(const CowVolume& v) {
  std::vector<uint8_t> out(v.size());
  v.read(0, out.size(), out.data());
  return out;
}

}  // namespace

TEST(granule_file_round_trips_and_rejects_any_damage) {
  const auto payload = pattern(3 * kG + 100, 5);
  GranuleDigests g;
  const Digest block = sha256_marked(payload.data(), payload.size(), kG, g.marks);
  g.block = block;
  g.raw_length = payload.size();
  REQUIRE(g.marks.size() == 4);
  CHECK(g.marks[3] == block);
  for (uint64_t k = 0; k < 4; ++k) CHECK(granule_matches(g, k, payload.data() + k * kG, k == 3 ? 100 : kG));
  const auto bytes = encode_granule_file(g);
  CHECK_EQ(bytes.size(), granule_file_size(4));

  GranuleDigests out;
  std::string why;
  CHECK(decode_granule_file(bytes.data(), bytes.size(), block, payload.size(), out, why));
  CHECK(out.marks == g.marks);
  // Every single flipped byte, anywhere in the file, is caught.
  for (size_t at = 0; at < bytes.size(); ++at) {
    auto bad = bytes;
    bad[at] ^= 0x40;
    why.clear();
    if (decode_granule_file(bad.data(), bad.size(), block, payload.size(), out, why)) {
      CHECK(!"a flipped byte was accepted");
      break;
    }
  }
  why.clear();
  CHECK(!decode_granule_file(bytes.data(), bytes.size() - 1, block, payload.size(), out, why));  // torn
  why.clear();
  CHECK(!decode_granule_file(bytes.data(), bytes.size(), block, payload.size() + 1, out, why));  // another length
  Digest other = block;
  other[0] ^= 1;
  why.clear();
  CHECK(!decode_granule_file(bytes.data(), bytes.size(), other, payload.size(), out, why));
  CHECK_EQ(why, std::string("describes another block"));
}

TEST(granule_file_whose_marks_end_in_another_digest_is_refused) {
  const auto payload = pattern(2 * kG, 6);
  GranuleDigests g;
  g.block = sha256_marked(payload.data(), payload.size(), kG, g.marks);
  g.raw_length = payload.size();
  g.marks.back()[5] ^= 1;  // a file that names the block but whose chain ends elsewhere
  const auto bytes = encode_granule_file(g);
  GranuleDigests out;
  std::string why;
  CHECK(!decode_granule_file(bytes.data(), bytes.size(), g.block, payload.size(), out, why));
  CHECK_EQ(why, std::string("marks end elsewhere"));
}

TEST(granule_files_are_written_by_the_scan_that_stores_the_blocks) {
  Store s(true);
  for (uint64_t i = 0; i < 4; ++i) CHECK(exists(s.granule_path(i)));
  // So a copy-up in the very first clone of the snapshot (here a 512-byte write, which covers
  // its 4 KiB granule in part) reads and checks one 64 KiB base granule, not the 4 MiB block.
  auto first = s.clone("first");
  const auto bytes = pattern(512, 9);
  first->write(kBlock + 5 * kG + 8192, bytes.data(), bytes.size(), false);
  CHECK_EQ(first->store_bytes_read(), kG);
  CHECK(read_all(*first) == s.expected_with(kBlock + 5 * kG + 8192, bytes));
}

TEST(granule_files_are_not_written_for_blocks_a_scan_does_not_store) {
  TempDir dir;
  const auto content = pattern(2 * kBlock, 4);
  const auto parent = scan_base(dir, content, kBlock);  // stored, without granule files
  const std::string img = dir / "base.img";
  JobControl control;
  ScanParams p{.image_path = img, .store_dir = dir / "blocks", .granule_dir = dir / "granules", .block_size = kBlock,
               .parent_digests = parent, .threads = 1};
  const ScanResult again = scan_image(p, control, nullptr);
  CHECK(again.digests == parent);
  CHECK_EQ(again.blocks_written, uint64_t{0});
  CHECK(!exists(dir / "granules"));
}

TEST(granule_file_is_written_after_a_whole_block_verification_and_spares_the_next_clone) {
  Store s;
  const auto bytes = pattern(512, 9);
  {
    auto first = s.clone("first");
    CHECK(!exists(s.granule_path(1)));
    first->write(kBlock + 5 * kG + 8192, bytes.data(), bytes.size(), false);  // a copy-up
    CHECK_EQ(first->store_bytes_read(), kBlock);  // the whole block, verified
    CHECK(exists(s.granule_path(1)));
  }
  auto second = s.clone("second");
  second->write(kBlock + 5 * kG + 8192, bytes.data(), bytes.size(), false);
  CHECK_EQ(second->store_bytes_read(), kG);  // only the granule the copy-up needed
  second->write(kBlock + 9 * kG, bytes.data(), bytes.size(), false);
  CHECK_EQ(second->store_bytes_read(), 2 * kG);
  auto expected = s.expected_with(kBlock + 9 * kG, bytes);
  std::memcpy(expected.data() + kBlock + 5 * kG + 8192, bytes.data(), bytes.size());
  CHECK(read_all(*second) == expected);
}

TEST(granule_verified_once_is_read_in_place_afterwards) {
  Store s;
  std::vector<uint8_t> buf(4096);
  s.clone("warm")->read(0, 1, buf.data());  // writes block 0's granule file
  auto v = s.clone("v");
  v->read(3 * kG + 10, 4096, buf.data());
  CHECK_EQ(v->store_bytes_read(), kG);
  v->read(3 * kG + 100, 4096, buf.data());
  CHECK_EQ(v->store_bytes_read(), kG + 4096);  // a pread of the 4 KiB, no second hash
  CHECK(std::memcmp(buf.data(), s.content.data() + 3 * kG + 100, 4096) == 0);
}

// Block 2's granule file is written by a first read, then one byte of its granule 7 is flipped in
// the block file: the payload no longer matches while the granule file still looks valid.
void damage_granule_7_of_block_2(Store& s, std::vector<uint8_t>& buf) {
  s.clone("warm")->read(2 * kBlock, 1, buf.data());
  REQUIRE(exists(s.granule_path(2)));
  const uint64_t at = kBlockHeaderSize + 7 * kG + 123;
  auto flipped = read_file(s.block_path(2));
  ::chmod(s.block_path(2).c_str(), 0600);
  write_bytes(s.block_path(2), at, {static_cast<uint8_t>(flipped[at] ^ 1)});
}

TEST(granule_damaged_block_payload_is_a_digest_mismatch_despite_a_valid_granule_file) {
  Store s;
  std::vector<uint8_t> buf(4096);
  damage_granule_7_of_block_2(s, buf);

  auto v = s.clone("v");
  try {
    v->read(2 * kBlock + 7 * kG + 4096, 4096, buf.data());
    CHECK(!"the damaged granule was served");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::DigestMismatch);
    CHECK(e.block_index == std::optional<uint64_t>(2));
    CHECK(e.digest == std::optional<Digest>(digest_at(s.digests, 2)));
    CHECK(std::string(e.what()).find("granule 7") != std::string::npos);
  }
  const auto bytes = pattern(512, 1);
  CHECK_THROWS_CODE(v->write(2 * kBlock + 7 * kG, bytes.data(), bytes.size(), false), ErrorCode::DigestMismatch);
  // The other granules still check out against their own digests.
  v->read(2 * kBlock + 6 * kG, 4096, buf.data());
  CHECK(std::memcmp(buf.data(), s.content.data() + 2 * kBlock + 6 * kG, 4096) == 0);
}

TEST(granule_volume_reads_a_damaged_base_block_again_once_a_fresh_file_replaced_it) {
  Store s;
  std::vector<uint8_t> buf(4096);
  damage_granule_7_of_block_2(s, buf);

  auto v = s.clone("v");
  const uint64_t off = 2 * kBlock + 7 * kG + 4096;
  CHECK_THROWS_CODE(v->read(off, 4096, buf.data()), ErrorCode::DigestMismatch);
  // A snapshot of a disk holding the good bytes renames a fresh file over the damaged one.
  const Digest d = digest_at(s.digests, 2);
  BlockWriter writer(s.blocks);
  writer.set_damaged(std::vector<uint8_t>(d.begin(), d.end()));
  REQUIRE(writer.put(d, s.content.data() + 2 * kBlock, kBlock));
  writer.sync();
  // The volume, still open, let go of the damaged file it had open: it reads the new one.
  v->read(off, 4096, buf.data());
  CHECK(std::memcmp(buf.data(), s.content.data() + off, 4096) == 0);
}

TEST(granule_damaged_file_is_ignored_and_rewritten) {
  Store s;
  std::vector<uint8_t> buf(4096);
  s.clone("warm")->read(0, 1, buf.data());
  const auto good = read_file(s.granule_path(0));
  write_bytes(s.granule_path(0), kGranuleHeaderSize + 3 * kDigestSize, {0xde, 0xad});
  {
    auto v = s.clone("v");
    v->read(3 * kG, 4096, buf.data());
    CHECK_EQ(v->store_bytes_read(), kBlock);  // back to a whole-block verification
    CHECK(std::memcmp(buf.data(), s.content.data() + 3 * kG, 4096) == 0);
  }
  CHECK(read_file(s.granule_path(0)) == good);
  // A torn (truncated) file too.
  CHECK(::truncate(s.granule_path(0).c_str(), 100) == 0);
  auto v = s.clone("w");
  v->read(3 * kG, 4096, buf.data());
  CHECK_EQ(v->store_bytes_read(), kBlock);
  CHECK(read_file(s.granule_path(0)) == good);
}

TEST(granule_short_last_block_verifies_its_short_last_granule) {
  Store s;
  std::vector<uint8_t> buf(5000);
  s.clone("warm")->read(3 * kBlock, 1, buf.data());
  auto v = s.clone("v");
  v->read(3 * kBlock, 5000, buf.data());
  CHECK_EQ(v->store_bytes_read(), uint64_t{5000});
  CHECK(std::memcmp(buf.data(), s.content.data() + 3 * kBlock, 5000) == 0);
  const auto bytes = pattern(100, 2);
  v->write(kSize - 100, bytes.data(), bytes.size(), false);
  CHECK(read_all(*v) == s.expected_with(kSize - 100, bytes));
}

TEST(granule_whole_block_read_through_granules_marks_the_block_verified) {
  Store s;
  std::vector<uint8_t> buf(kBlock);
  s.clone("warm")->read(kBlock, 1, buf.data());
  auto v = s.clone("v");
  v->read(kBlock, kBlock, buf.data());
  CHECK_EQ(v->store_bytes_read(), kBlock);
  CHECK(std::memcmp(buf.data(), s.content.data() + kBlock, kBlock) == 0);
  // Verified granule by granule, the block now reads in place even if its granule file goes.
  CHECK(::unlink(s.granule_path(1).c_str()) == 0);
  v->read(kBlock + 100, 4096, buf.data());
  CHECK_EQ(v->store_bytes_read(), kBlock + 4096);
  CHECK(!exists(s.granule_path(1)));
}

TEST(granule_cache_off_without_a_granule_dir) {
  Store s;
  const LayerFiles top{s.dir / "t.data", s.dir / "t.map"};
  create_cow_layer(top, kSize, "t");
  CowVolume v(VolumeSpec{.store_dir = s.blocks, .block_size = kBlock, .size_bytes = kSize, .base_digests = s.digests,
                         .layers = {top}, .writable = true});
  std::vector<uint8_t> buf(4096);
  v.read(kG, 4096, buf.data());
  CHECK_EQ(v.store_bytes_read(), kBlock);
  CHECK(!exists(s.granules));
}

TEST(granule_tmp_files_do_not_stay_behind) {
  Store s;
  std::vector<uint8_t> buf(1);
  auto v = s.clone("v");
  for (uint64_t i = 0; i < 4; ++i) v->read(i * kBlock, 1, buf.data());
  // Sequential reads start the verification read-ahead, whose thread may still be writing the
  // granule file of a block the reads also verified: its temporary is gone once it is idle.
  v->wait_for_verify_ahead();
  for (uint64_t i = 0; i < 4; ++i) CHECK(exists(s.granule_path(i)));
  CHECK(::rmdir((s.granules + "/tmp").c_str()) == 0);  // empty
}

TEST(granule_files_are_not_written_for_blocks_of_one_granule) {
  TempDir dir;
  const auto content = pattern(4 * kG, 3);
  const auto digests = scan_base(dir, content, kG);
  const LayerFiles top{dir / "t.data", dir / "t.map"};
  create_cow_layer(top, content.size(), "t");
  CowVolume v(VolumeSpec{.store_dir = dir / "blocks", .granule_dir = dir / "granules", .block_size = kG,
                         .size_bytes = content.size(), .base_digests = digests, .layers = {top}, .writable = true});
  std::vector<uint8_t> buf(content.size());
  v.read(0, buf.size(), buf.data());
  CHECK(buf == content);
  CHECK(!exists(dir / "granules"));
}

TEST(granule_bits_survive_a_rebase_for_unchanged_blocks) {
  Store s;
  std::vector<uint8_t> buf(4096);
  s.clone("warm")->read(0, 1, buf.data());
  auto v = s.clone("v");
  v->read(2 * kG, 4096, buf.data());
  CHECK_EQ(v->store_bytes_read(), kG);
  v->rebase(s.digests, 0);
  v->read(2 * kG + 4096, 4096, buf.data());
  CHECK_EQ(v->store_bytes_read(), kG + 4096);  // still verified: a pread, no hash
}

TEST(granule_files_are_used_but_not_written_by_read_only_volumes) {
  Store s;
  const VolumeSpec read_only{.store_dir = s.blocks, .granule_dir = s.granules, .block_size = kBlock, .size_bytes = kSize,
                             .base_digests = s.digests};
  std::vector<uint8_t> buf(4096);
  {
    CowVolume v(read_only);
    v.read(kG, 4096, buf.data());
    CHECK_EQ(v.store_bytes_read(), kBlock);
    CHECK(!exists(s.granule_path(0)));
  }
  s.clone("warm")->read(0, 1, buf.data());
  CowVolume v(read_only);
  v.read(kG, 4096, buf.data());
  CHECK_EQ(v.store_bytes_read(), kG);
}

TEST(granule_copy_up_leaves_its_block_to_be_verified_whole_in_the_background) {
  Store s(true);
  auto v = s.clone("v", true);
  const auto bytes = pattern(512, 3);  // in one 4 KiB granule, in part: a copy-up
  v->write(kBlock + 2 * kG + 100, bytes.data(), bytes.size(), false);
  // The copy-up checked one granule; the idle-priority thread then reads the rest of the block.
  // (The whole block is read again, the granule already checked included.)
  for (int tries = 0; tries < 500 && v->store_bytes_read() < kG + kBlock; ++tries) ::usleep(10'000);
  CHECK_EQ(v->store_bytes_read(), kG + kBlock);
  // Verified whole, the block now reads in place: a pread of the 4 KiB asked for, no granule check.
  std::vector<uint8_t> buf(4096);
  v->read(kBlock + 9 * kG, 4096, buf.data());
  CHECK_EQ(v->store_bytes_read(), kG + kBlock + 4096);
  CHECK(std::memcmp(buf.data(), s.content.data() + kBlock + 9 * kG, 4096) == 0);
}

TEST(granule_background_verification_stops_with_the_volume) {
  Store s(true);
  auto v = s.clone("v", true);
  const auto bytes = pattern(4096, 4);
  for (uint64_t i = 0; i < 4; ++i) v->write(i * kBlock + 100, bytes.data(), bytes.size(), false);
  v->close();  // joins the thread, whatever it was doing (the sanitizer build sees any use after)
  const uint64_t read_at_close = v->store_bytes_read();
  ::usleep(50'000);
  CHECK_EQ(v->store_bytes_read(), read_at_close);
  v.reset();
}
