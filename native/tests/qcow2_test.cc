// The qcow2 reader and writer against each other, and the reader against damaged and hostile
// headers. (Images made by QEMU itself are covered by test/engine/qcow2.test.ts.)
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/block_format.h"
#include "core/block_writer.h"
#include "core/digest.h"
#include "core/scan_image.h"
#include "core/store_layout.h"
#include "formats/block_source.h"
#include "formats/qcow2_format.h"
#include "formats/qcow2_reader.h"
#include "formats/qcow2_writer.h"
#include "io/qemu_lock.h"
#include "tests/harness.h"
#include "tests/stored_blocks.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 64 * 1024;

// A store holding `blocks` (empty = ZERO) and the digest array describing them.
std::vector<uint8_t> store_blocks(const std::string& store, const std::vector<std::vector<uint8_t>>& blocks) {
  BlockWriter w(store);
  std::vector<uint8_t> digests = put_blocks(w, blocks);
  w.sync();
  return digests;
}

std::vector<uint8_t> read_all(const BlockSource& s, bool* all_zero_known = nullptr) {
  std::vector<uint8_t> out(s.size());
  bool zero = true;
  for (uint64_t off = 0; off < s.size(); off += kBlock) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(kBlock, s.size() - off));
    const SourceRead r = s.read(off, len, out.data() + off);
    if (r.zero) std::memset(out.data() + off, 0, len);
    zero = zero && r.zero;
  }
  if (all_zero_known) *all_zero_known = zero;
  return out;
}

Qcow2WriteResult write_image(const std::string& path, const std::string& store, const std::vector<uint8_t>& digests,
                             uint64_t size, uint32_t cluster_bits, uint32_t version, const std::string& backing = "",
                             const std::string& backing_format = "") {
  Qcow2WriteParams p;
  p.image_path = path;
  p.store_dir = store;
  p.block_size = kBlock;
  p.size_bytes = size;
  p.digests = digests;
  p.cluster_bits = cluster_bits;
  p.version = version;
  p.backing_file = backing;
  p.backing_format = backing_format;
  // The chain as the engine would check it: the name resolved, a file without a symlink on its way.
  if (!backing.empty()) {
    const std::string named = resolve_backing_path(path, backing);
    p.checked_backing = {{named, named, backing_format == "qcow2" ? ImageFormat::Qcow2 : ImageFormat::Raw}};
  }
  JobControl control;
  return write_qcow2_image(p, control, nullptr);
}

void patch(const std::string& path, uint64_t offset, const std::vector<uint8_t>& bytes) { write_bytes(path, offset, bytes); }

std::vector<uint8_t> be32(uint32_t v) {
  std::vector<uint8_t> b(4);
  qcow2::put_be32(b.data(), v);
  return b;
}
std::vector<uint8_t> be64(uint64_t v) {
  std::vector<uint8_t> b(8);
  qcow2::put_be64(b.data(), v);
  return b;
}

// A small valid v3 image with data in blocks 0 and 2 of 4.
std::vector<uint8_t> expected_content(const std::vector<std::vector<uint8_t>>& blocks) {
  std::vector<uint8_t> out;
  for (const auto& b : blocks) {
    if (b.empty()) out.insert(out.end(), kBlock, 0);
    else out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

}  // namespace

TEST(qcow2_written_image_reads_back_exactly_in_every_layout) {
  TempDir dir;
  const std::vector<std::vector<uint8_t>> blocks = {pattern(kBlock, 1), {}, pattern(kBlock, 2), {}};
  const auto digests = store_blocks(dir.path(), blocks);
  const auto want = expected_content(blocks);
  for (uint32_t bits : {9u, 12u, 16u, 21u}) {
    for (uint32_t version : {2u, 3u}) {
      const std::string img = dir / ("img-" + std::to_string(bits) + "-" + std::to_string(version));
      write_image(img, dir.path(), digests, 4 * kBlock, bits, version);
      const Qcow2Header h = read_qcow2_header(img);
      CHECK_EQ(h.version, version);
      CHECK_EQ(h.cluster_bits, bits);
      CHECK_EQ(h.size, 4 * kBlock);
      auto src = open_qcow2_source(img);
      CHECK(read_all(*src) == want);
      if (bits <= 16) {
        // Block 1 is unallocated clusters: known zero without reading or touching the buffer.
        const SourceRead r = src->read(kBlock, kBlock, nullptr);
        CHECK(r.zero);
      }
    }
  }
}

TEST(qcow2_written_image_leaves_the_zero_pages_of_its_clusters_holes) {
  TempDir dir;
  const std::vector<std::vector<uint8_t>> blocks = {pattern(kBlock, 3), {}, {}, {}};
  const auto digests = store_blocks(dir.path(), blocks);
  const std::string img = dir / "img-2m";
  write_image(img, dir.path(), digests, 4 * kBlock, 21, 3);  // 2 MiB clusters
  struct stat st{};
  REQUIRE(::stat(img.c_str(), &st) == 0);
  CHECK_EQ(static_cast<uint64_t>(st.st_size) % (2u << 20), 0u);
  // Header, L1, one data cluster, its L2, a refcount block and table: six 2 MiB clusters in
  // size, of which the 64 KiB of data and a few pages of metadata are written.
  CHECK(static_cast<uint64_t>(st.st_size) >= 6 * (2u << 20));
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < 512 * 1024);
  auto src = open_qcow2_source(img);
  CHECK(read_all(*src) == expected_content(blocks));
}

// Names a backing file in the header of an image written without one, as `qemu-img rebase -u`
// does: the name goes after the header, in the first cluster.
static void set_backing_name(const std::string& img, const std::string& name) {
  patch(img, 512, std::vector<uint8_t>(name.begin(), name.end()));
  patch(img, qcow2::kOffBackingOffset, be64(512));
  patch(img, qcow2::kOffBackingSize, be32(static_cast<uint32_t>(name.size())));
}

TEST(qcow2_zero_clusters_hide_the_backing_file) {
  TempDir dir;
  const std::string base = dir / "base.raw";
  make_sparse_file(base, 4 * kBlock);
  write_bytes(base, 0, pattern(4 * kBlock, 9));
  const std::vector<std::vector<uint8_t>> blocks = {{}, pattern(kBlock, 3), {}, {}};
  const auto digests = store_blocks(dir.path(), blocks);
  for (uint32_t version : {2u, 3u}) {
    const std::string img = dir / ("over-v" + std::to_string(version));
    write_image(img, dir.path(), digests, 4 * kBlock, 16, version, "base.raw", "raw");
    const Qcow2Header h = read_qcow2_header(img);
    CHECK_EQ(h.backing_file, std::string("base.raw"));
    CHECK_EQ(h.backing_format, std::string("raw"));
    auto src = open_qcow2_source(img);
    CHECK(read_all(*src) == expected_content(blocks));
  }
}

// Blocks of 16 clusters of 4 KiB over a raw backing file of three blocks: the image must hold only
// what differs from it, as the overlay it replaces did.
TEST(qcow2_image_with_a_backing_file_holds_only_what_differs_from_it) {
  TempDir dir;
  const std::string base = dir / "base.raw";
  make_sparse_file(base, 3 * kBlock);
  write_bytes(base, 0, pattern(3 * kBlock, 9));
  const auto under = pattern(3 * kBlock, 9);
  std::vector<uint8_t> same(under.begin(), under.begin() + kBlock);
  std::vector<uint8_t> one_cluster_changed(under.begin() + kBlock, under.begin() + 2 * kBlock);
  one_cluster_changed[5 * 4096 + 7] ^= 0xff;
  // The same, one cluster changed, ZERO over backing data, ZERO past the backing file's end.
  const std::vector<std::vector<uint8_t>> blocks = {same, one_cluster_changed, {}, {}};
  const auto digests = store_blocks(dir.path(), blocks);
  // A block whose digest is what the backing file holds is never read: its store file may be gone.
  const Digest d0 = sha256(same.data(), same.size());
  REQUIRE(::unlink(block_file_path(dir.path(), d0).c_str()) == 0);
  for (uint32_t version : {2u, 3u}) {
    const std::string img = dir / ("over-v" + std::to_string(version));
    const Qcow2WriteResult r = write_image(img, dir.path(), digests, 4 * kBlock, 12, version, "base.raw", "raw");
    CHECK(read_all(*open_qcow2_source(img)) == expected_content(blocks));
    CHECK_EQ(r.blocks_from_backing, 1u);
    CHECK_EQ(r.blocks_written, 1u);
    CHECK_EQ(r.bytes_written, 4096u);  // of the block read, only the cluster that differs
    // The 16 clusters of block 2 read as zeros over the backing file's data; those of block 3 are
    // unallocated, as the backing file ends before them.
    CHECK_EQ(r.clusters_zeroed, 16u);
    // Header, L1, one L2 table, one data cluster, a refcount block and table; in v2 (no zero
    // flag) the zeroed clusters are allocated too, as holes in the file.
    CHECK_EQ(r.file_bytes, (version == 3 ? 6u : 6u + 16u) * 4096u);
    // Progress: the 2 blocks of the snapshot that are not ZERO, and the backing file's 3 of data.
    CHECK_EQ(r.progress_total, 5 * kBlock);
  }
}

// A scan's progress follows what it reads: a data cluster in full, a zero cluster not at all,
// and an unallocated one what the backing chain holds there (a hole in it nothing).
TEST(qcow2_source_weighs_its_allocated_clusters_and_its_chain_data) {
  TempDir dir;
  const std::string base = dir / "base.raw";
  make_sparse_file(base, 4 * kBlock);
  write_bytes(base, 0, pattern(2 * kBlock, 9));
  // Block 0 differs from the backing file (data), block 1 is ZERO over its data (a zero cluster),
  // block 2 reads as the hole below it (unallocated), block 3 is data.
  const auto digests = store_blocks(dir.path(), {pattern(kBlock, 3), {}, {}, pattern(kBlock, 5)});
  write_image(dir / "over.qcow2", dir.path(), digests, 4 * kBlock, 16, 3, "base.raw", "raw");
  auto over = open_qcow2_source(dir / "over.qcow2");
  CHECK_EQ(over->data_bytes(0, 4 * kBlock), 2 * kBlock);
  CHECK_EQ(over->data_bytes(kBlock, 2 * kBlock), 0u);
  CHECK_EQ(over->data_bytes(3 * kBlock + 4096, kBlock), kBlock - 4096);  // clipped at the virtual size

  // Nothing allocated: the backing file's data, through the chain.
  const auto none = store_blocks(dir.path(), {{}, {}, {}, {}});
  write_image(dir / "mid.qcow2", dir.path(), none, 4 * kBlock, 16, 3);
  set_backing_name(dir / "mid.qcow2", "base.raw");
  auto mid = open_qcow2_source(dir / "mid.qcow2");
  CHECK_EQ(mid->data_bytes(0, 4 * kBlock), 2 * kBlock);
  CHECK_EQ(mid->data_bytes(kBlock / 2, kBlock), kBlock);

  JobControl control;
  std::vector<std::pair<uint64_t, uint64_t>> reports;
  const ScanResult r = scan_image({.image_path = dir / "over.qcow2", .format = ImageFormat::Qcow2, .store_dir = dir.path(), .block_size = kBlock, .threads = 1},
                                  control, [&](uint64_t done, uint64_t total) { reports.emplace_back(done, total); });
  CHECK_EQ(r.progress_total, 2 * kBlock);
  CHECK_EQ(control.done(), 2 * kBlock);
  for (const auto& [done, total] : reports) CHECK(total == 2 * kBlock && done <= total);
}

TEST(qcow2_image_with_a_backing_file_is_written_only_against_its_checked_chain) {
  TempDir dir;
  make_sparse_file(dir / "base.raw", kBlock);
  const auto digests = store_blocks(dir.path(), {pattern(kBlock, 1)});
  Qcow2WriteParams p;
  p.image_path = dir / "over.qcow2";
  p.store_dir = dir.path();
  p.block_size = kBlock;
  p.size_bytes = kBlock;
  p.digests = digests;
  p.backing_file = "base.raw";
  p.backing_format = "raw";
  JobControl control;
  CHECK_THROWS_CODE(write_qcow2_image(p, control, nullptr), ErrorCode::InvalidArgument);
  p.checked_backing = {{dir / "other.raw", dir / "base.raw", ImageFormat::Raw}};
  CHECK_THROWS_CODE(write_qcow2_image(p, control, nullptr), ErrorCode::NotAnImage);
  struct stat st{};
  CHECK(::stat(p.image_path.c_str(), &st) != 0);
}

TEST(qcow2_unallocated_clusters_read_through_a_chain) {
  TempDir dir;
  const std::string base = dir / "base.raw";
  make_sparse_file(base, 2 * kBlock);  // shorter than the overlay: the rest reads as zeros
  write_bytes(base, 0, pattern(2 * kBlock, 4));
  const auto none = store_blocks(dir.path(), {{}, {}, {}, {}});
  // With a backing file the writer marks ZERO blocks as zero clusters; to get unallocated ones,
  // write without a backing file and patch its name in (what qemu-img rebase -u does).
  write_image(dir / "mid.qcow2", dir.path(), none, 4 * kBlock, 16, 3);
  set_backing_name(dir / "mid.qcow2", "base.raw");
  auto src = open_qcow2_source(dir / "mid.qcow2");
  auto want = pattern(2 * kBlock, 4);
  want.resize(4 * kBlock, 0);
  CHECK(read_all(*src) == want);
}

TEST(qcow2_backing_chain_that_loops_is_refused) {
  TempDir dir;
  const auto none = store_blocks(dir.path(), {{}});
  const std::string img = dir / "self.qcow2";
  write_image(img, dir.path(), none, kBlock, 16, 3);
  set_backing_name(img, "self.qcow2");
  CHECK_THROWS_CODE(open_qcow2_source(img), ErrorCode::ImageCorrupt);
  Qcow2OpenOptions no_backing;
  no_backing.max_backing_depth = 0;
  CHECK_THROWS_CODE(open_qcow2_source(img, no_backing), ErrorCode::UnsupportedFormat);
}

TEST(qcow2_checked_backing_chain_is_read_exactly_or_refused) {
  TempDir dir;
  const std::string base = dir / "base.raw";
  make_sparse_file(base, 2 * kBlock);
  write_bytes(base, 0, pattern(2 * kBlock, 4));
  const auto none = store_blocks(dir.path(), {{}, {}});
  const std::string img = dir / "top.qcow2";
  write_image(img, dir.path(), none, 2 * kBlock, 16, 3);
  set_backing_name(img, "base.raw");
  auto open_with = [&](std::vector<CheckedBacking> chain) {
    Qcow2OpenOptions o;
    o.checked_backing = &chain;
    return open_qcow2_source(img, o);
  };
  CHECK(read_all(*open_with({{base, base, ImageFormat::Raw}})) == pattern(2 * kBlock, 4));

  // The header names another file than was checked, or none was checked at all.
  CHECK_THROWS_CODE(open_with({{dir / "other.raw", base, ImageFormat::Raw}}), ErrorCode::NotAnImage);
  CHECK_THROWS_CODE(open_with({}), ErrorCode::NotAnImage);
  // Read as another format than checked, or a chain that goes on past a raw file.
  CHECK_THROWS_CODE(open_with({{base, base, ImageFormat::Qcow2}}), ErrorCode::NotAnImage);
  CHECK_THROWS_CODE(open_with({{base, base, ImageFormat::Raw}, {base, base, ImageFormat::Raw}}), ErrorCode::NotAnImage);
  // The checked real path leads through a symlink now: never followed.
  ::mkdir((dir / "real").c_str(), 0700);
  ::symlink((dir / "real").c_str(), (dir / "link").c_str());
  make_sparse_file(dir / "real/base.raw", 2 * kBlock);
  CHECK_THROWS_CODE(open_with({{base, dir / "link/base.raw", ImageFormat::Raw}}), ErrorCode::NotAnImage);
  // The name still leads to a file, but not to the checked one.
  CHECK_THROWS_CODE(open_with({{base, dir / "real/base.raw", ImageFormat::Raw}}), ErrorCode::NotAnImage);
}

// A missing backing file is named by what the image calls it and the image that refers to it:
// an ENOENT of a resolved path the user never typed says neither.
TEST(qcow2_missing_backing_file_names_the_image_that_refers_to_it) {
  TempDir dir;
  const auto none = store_blocks(dir.path(), {{}});
  const std::string img = dir / "over.qcow2";
  write_image(img, dir.path(), none, kBlock, 16, 3);
  set_backing_name(img, "gone.raw");
  try {
    open_qcow2_source(img);
    CHECK(false);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::ImageNotFound);
    const std::string what = e.what();
    CHECK(what.find("\"gone.raw\"") != std::string::npos);
    CHECK(what.find(img) != std::string::npos);
  }
}

// The engine checks each backing file against the image roots before it is opened, so reading
// one link of a chain must not touch the next (here it does not even exist), nor probe a format
// the header does not record. The backing name is resolved from the name the image is known by,
// not from where it was read.
TEST(qcow2_link_reads_one_header_and_opens_no_backing_file) {
  TempDir dir;
  const auto none = store_blocks(dir.path(), {{}});
  const std::string img = dir / "over.qcow2";
  make_sparse_file(dir / "base.raw", kBlock);  // written against it, then gone: never opened below
  write_image(img, dir.path(), none, kBlock, 16, 3, "base.raw", "raw");
  REQUIRE(::unlink((dir / "base.raw").c_str()) == 0);
  const Qcow2Link l = read_qcow2_link(img, "/vms/over.qcow2");
  CHECK_EQ(l.header.backing_file, std::string("base.raw"));
  CHECK_EQ(l.backing_path, std::string("/vms/base.raw"));
  CHECK(l.backing_format == ImageFormat::Raw);
  struct stat st;
  REQUIRE(::stat(img.c_str(), &st) == 0);
  CHECK(l.dev == st.st_dev && l.ino == st.st_ino);
  set_backing_name(img, "/gone/base.qcow2");
  CHECK_EQ(read_qcow2_link(img, img).backing_path, std::string("/gone/base.qcow2"));

  const std::string bare = dir / "bare.qcow2";
  write_image(bare, dir.path(), none, kBlock, 16, 3);
  CHECK(read_qcow2_link(bare, bare).backing_path.empty());
  CHECK(!read_qcow2_link(bare, bare).backing_format.has_value());
  set_backing_name(bare, "base.raw");
  const Qcow2Link probed = read_qcow2_link(bare, bare);
  CHECK_EQ(probed.backing_path, dir / "base.raw");
  CHECK(!probed.backing_format.has_value());  // none recorded: the engine probes it once checked
  set_backing_name(bare, "json:{\"file.filename\":\"/etc/shadow\"}");
  CHECK_THROWS_CODE(read_qcow2_link(bare, bare), ErrorCode::UnsupportedFormat);

  // Read as a checked real path: never through a symlink.
  ::symlink(bare.c_str(), (dir / "link.qcow2").c_str());
  CHECK_THROWS_CODE(read_qcow2_link(dir / "link.qcow2", dir / "link.qcow2"), ErrorCode::NotAnImage);
}

// QEMU reads the virtual size in whole 512-byte sectors; so does the reader, or a snapshot and
// its clone would be longer than the disk the guest sees.
TEST(qcow2_virtual_size_is_whole_sectors_as_qemu_reads_it) {
  TempDir dir;
  const auto digests = store_blocks(dir.path(), {pattern(kBlock, 3)});
  const std::string img = dir / "odd.qcow2";
  write_image(img, dir.path(), digests, kBlock, 16, 3);
  patch(img, qcow2::kOffSize, be64(kBlock - 100));
  CHECK_EQ(read_qcow2_header(img).size, kBlock - 512);
  CHECK_EQ(open_qcow2_source(img)->size(), kBlock - 512);
}

TEST(qcow2_encrypted_images_are_refused_naming_the_method) {
  TempDir dir;
  const auto digests = store_blocks(dir.path(), {pattern(kBlock, 5)});
  const std::string img = dir / "enc.qcow2";
  write_image(img, dir.path(), digests, kBlock, 16, 3);
  for (const auto& [method, name] : std::vector<std::pair<uint32_t, std::string>>{{1, "(AES, encrypt.format=aes)"}, {2, "(LUKS, encrypt.format=luks)"}}) {
    patch(img, qcow2::kOffCryptMethod, be32(method));
    try {
      open_qcow2_source(img);
      ::harness::fail(__FILE__, __LINE__, "an encrypted image opened");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::UnsupportedFormat);
      CHECK(std::string(e.what()).find("encrypted qcow2 images are not supported " + name) != std::string::npos);
    }
  }
}

TEST(qcow2_damaged_headers_fail_with_a_code) {
  TempDir dir;
  const auto digests = store_blocks(dir.path(), {pattern(kBlock, 5), {}});
  const std::string good = dir / "good.qcow2";
  write_image(good, dir.path(), digests, 2 * kBlock, 16, 3);
  const std::vector<uint8_t> original = read_file(good);

  enum class Expect { Fails, Reads, NoCrash };
  struct Case {
    const char* what;
    uint64_t offset;
    std::vector<uint8_t> bytes;
    ErrorCode code;
    Expect expect = Expect::Fails;
  };
  std::vector<uint8_t> backing_outside = be64(65530);
  for (uint8_t b : be32(100)) backing_outside.push_back(b);
  const std::vector<Case> cases = {
      {"no magic", 0, be32(0), ErrorCode::NotAnImage},
      {"version 4", qcow2::kOffVersion, be32(4), ErrorCode::UnsupportedFormat},
      {"cluster bits 40", qcow2::kOffClusterBits, be32(40), ErrorCode::ImageCorrupt},
      {"cluster bits 8", qcow2::kOffClusterBits, be32(8), ErrorCode::ImageCorrupt},
      {"encrypted", qcow2::kOffCryptMethod, be32(2), ErrorCode::UnsupportedFormat},
      {"L1 too small", qcow2::kOffL1Size, be32(0), ErrorCode::ImageCorrupt},
      {"L1 huge", qcow2::kOffL1Size, be32(0x10000000), ErrorCode::ImageCorrupt},
      {"L1 past the end", qcow2::kOffL1Offset, be64(1ull << 40), ErrorCode::ImageCorrupt},
      {"L1 unaligned", qcow2::kOffL1Offset, be64(65536 + 8), ErrorCode::ImageCorrupt},
      {"virtual size 2^60", qcow2::kOffSize, be64(1ull << 60), ErrorCode::ImageCorrupt},
      {"dirty is fine", qcow2::kOffIncompatible, be64(qcow2::kIncompatDirty), ErrorCode::InvalidArgument, Expect::Reads},
      {"corrupt bit", qcow2::kOffIncompatible, be64(qcow2::kIncompatCorrupt), ErrorCode::ImageCorrupt},
      {"external data file", qcow2::kOffIncompatible, be64(qcow2::kIncompatDataFile), ErrorCode::UnsupportedFormat},
      {"unknown feature", qcow2::kOffIncompatible, be64(1ull << 40), ErrorCode::UnsupportedFormat},
      {"header length 20", qcow2::kOffHeaderLength, be32(20), ErrorCode::ImageCorrupt},
      {"header length past the cluster", qcow2::kOffHeaderLength, be32(1 << 20), ErrorCode::ImageCorrupt},
      {"refcount order 9", qcow2::kOffRefcountOrder, be32(9), ErrorCode::ImageCorrupt},
      {"backing name outside the cluster", qcow2::kOffBackingOffset, backing_outside, ErrorCode::ImageCorrupt},
      // A valid header whose L2 tables hold 8-byte entries read as 16-byte ones.
      {"extended L2 over standard tables", qcow2::kOffIncompatible, be64(qcow2::kIncompatExtendedL2), ErrorCode::ImageCorrupt, Expect::NoCrash},
      {"zstd without the feature bit", qcow2::kOffCompressionType, {1}, ErrorCode::ImageCorrupt},
  };
  for (const Case& c : cases) {
    const std::string img = dir / "bad.qcow2";
    ::unlink(img.c_str());
    make_sparse_file(img, 0);
    write_bytes(img, 0, original);
    patch(img, c.offset, c.bytes);
    if (c.expect == Expect::Reads) {
      try {
        auto s = open_qcow2_source(img);
        CHECK(read_all(*s) == expected_content({pattern(kBlock, 5), {}}));
      } catch (const Error& e) {
        ::harness::fail(__FILE__, __LINE__, std::string(c.what) + ": " + e.what());
      }
      continue;
    }
    if (c.expect == Expect::NoCrash) {
      try {
        auto s = open_qcow2_source(img);
        read_all(*s);
      } catch (const Error&) {
      }
      continue;
    }
    try {
      open_qcow2_source(img);
      ::harness::fail(__FILE__, __LINE__, std::string(c.what) + ": opened");
    } catch (const Error& e) {
      if (e.code() != c.code) ::harness::fail(__FILE__, __LINE__, std::string(c.what) + ": " + e.code_name() + " " + e.what());
    }
  }

  // Truncations anywhere in the metadata: an error or a zero-filled read, never a crash.
  for (uint64_t len : {0ull, 3ull, 50ull, 71ull, 103ull, 4096ull, 65536ull + 8, 131072ull + 100}) {
    const std::string img = dir / "short.qcow2";
    ::unlink(img.c_str());
    make_sparse_file(img, 0);
    std::vector<uint8_t> part(original.begin(), original.begin() + static_cast<long>(std::min<uint64_t>(len, original.size())));
    if (!part.empty()) write_bytes(img, 0, part);
    try {
      auto s = open_qcow2_source(img);
      read_all(*s);
      CHECK(len > 65536);  // only truncations past the L1 table can open at all
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::ImageCorrupt || e.code() == ErrorCode::NotAnImage);
    }
  }
}

TEST(qcow2_table_offsets_outside_the_file_fail_on_read) {
  TempDir dir;
  const auto digests = store_blocks(dir.path(), {pattern(kBlock, 6)});
  const std::string img = dir / "l2.qcow2";
  write_image(img, dir.path(), digests, kBlock, 16, 3);
  const Qcow2Header h = read_qcow2_header(img);
  patch(img, h.l1_offset, be64(qcow2::kFlagCopied | (1ull << 40)));  // L2 table far past the end
  auto s = open_qcow2_source(img);
  std::vector<uint8_t> buf(kBlock);
  CHECK_THROWS_CODE(s->read(0, kBlock, buf.data()), ErrorCode::ImageCorrupt);
  CHECK_THROWS_CODE(s->read(0, kBlock * 2, buf.data()), ErrorCode::InvalidArgument);
}

namespace {

// `data` deflated raw (no zlib header, 4 KiB window), as QEMU compresses a qcow2 cluster.
std::vector<uint8_t> deflate_cluster(const std::vector<uint8_t>& data) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  std::vector<uint8_t> out(deflateBound(&z, data.size()));
  z.next_in = const_cast<uint8_t*>(data.data());
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  const int ret = deflate(&z, Z_FINISH);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  REQUIRE(ret == Z_STREAM_END);
  return out;
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

// A running QEMU appends the clusters it allocates while the image is scanned, and the L2 entries
// read on each request name them: they are read, not taken for offsets past the end of the file.
TEST(qcow2_clusters_appended_after_the_open_are_read) {
  TempDir dir;
  const auto digests = store_blocks(dir.path(), {pattern(kBlock, 1), {}, {}, {}});
  const std::string img = dir / "growing.qcow2";
  write_image(img, dir.path(), digests, 4 * kBlock, 16, 3);
  const Qcow2Header h = read_qcow2_header(img);
  const std::vector<uint8_t> file = read_file(img);
  const uint64_t l2 = qcow2::get_be64(file.data() + h.l1_offset) & qcow2::kOffsetMask;
  REQUIRE(l2 != 0);

  auto s = open_qcow2_source(img);
  // After the open: a data cluster for guest cluster 1 and a compressed one for cluster 2, each
  // appended to the file before its L2 entry is written, as QEMU orders them.
  const uint64_t data_at = (file_size(img) + kBlock - 1) / kBlock * kBlock;
  write_bytes(img, data_at, pattern(kBlock, 7));
  patch(img, l2 + 8, be64(qcow2::kFlagCopied | data_at));
  const uint64_t compressed_at = data_at + kBlock;
  const std::vector<uint8_t> deflated = deflate_cluster(pattern(kBlock, 8));
  write_bytes(img, compressed_at, deflated);
  const uint64_t sectors = (deflated.size() + 511) / 512;
  patch(img, l2 + 16, be64(qcow2::kFlagCompressed | (sectors - 1) << (62 - (16 - 8)) | compressed_at));

  std::vector<uint8_t> buf(kBlock);
  CHECK(!s->read(kBlock, kBlock, buf.data()).zero);
  CHECK(buf == pattern(kBlock, 7));
  CHECK(!s->read(2 * kBlock, kBlock, buf.data()).zero);
  CHECK(buf == pattern(kBlock, 8));

  // Past the end of the file as it is now: still corrupt.
  patch(img, l2 + 24, be64(qcow2::kFlagCopied | (data_at + 64 * kBlock)));
  CHECK_THROWS_CODE(s->read(3 * kBlock, kBlock, buf.data()), ErrorCode::ImageCorrupt);
  std::vector<uint8_t> all(4 * kBlock);
  CHECK_THROWS_CODE(s->read(0, 4 * kBlock, all.data()), ErrorCode::ImageCorrupt);
}

// The same with QEMU as the writer: qemu-io allocates clusters in an image already open for the
// scan, as a running VM does between the scan's open and its reads.
TEST(qcow2_clusters_qemu_allocated_after_the_open_are_read) {
  TempDir dir;
  const std::string img = dir / "live.qcow2";
  std::string out;
  const auto qemu_io = [&](const std::string& cmd) {
    if (run_command("qemu-io -f qcow2 -c '" + cmd + "' '" + img + "'", out) != 0) throw std::runtime_error("qemu-io: " + out);
  };
  if (run_command("qemu-img create -q -f qcow2 -o cluster_size=65536 '" + img + "' 8M", out) != 0)
    throw std::runtime_error("qemu-img create: " + out);
  qemu_io("write -P 0x61 0 64k");
  auto s = open_qcow2_source(img);
  const uint64_t size_at_open = file_size(img);
  qemu_io("write -P 0x62 4M 1M");
  REQUIRE(file_size(img) > size_at_open);
  std::vector<uint8_t> buf(1 << 20);
  CHECK(!s->read(4 << 20, buf.size(), buf.data()).zero);
  CHECK(std::all_of(buf.begin(), buf.end(), [](uint8_t b) { return b == 0x62; }));
}

namespace {

// An image QEMU made, with persistent dirty bitmaps added by qemu-img (none for an empty list).
std::string qemu_image_with_bitmaps(const TempDir& dir, const std::string& name, const std::vector<std::string>& bitmaps) {
  const std::string img = dir / name;
  std::string out;
  if (run_command("qemu-img create -q -f qcow2 '" + img + "' 4M", out) != 0) throw std::runtime_error("qemu-img create: " + out);
  for (const std::string& b : bitmaps)
    if (run_command("qemu-img bitmap --add '" + img + "' " + b, out) != 0) throw std::runtime_error("qemu-img bitmap: " + out);
  return img;
}

// The first cluster of a v3 image written without a backing file (so its extension area is
// empty), with a bitmaps extension of `len` bytes holding `data` put where extensions start and
// the autoclear bit set or not. Only the header is parsed (parse_qcow2_header), so a span cut
// short anywhere shows whether the parser stays inside it.
std::vector<uint8_t> header_with_bitmaps_extension(uint32_t len, const std::vector<uint8_t>& data, bool autoclear) {
  TempDir dir;
  const auto digests = store_blocks(dir.path(), {pattern(kBlock, 7)});
  write_image(dir / "h.qcow2", dir.path(), digests, kBlock, 16, 3);
  std::vector<uint8_t> head = read_file(dir / "h.qcow2");
  head.resize(kBlock);
  qcow2::put_be64(&head[qcow2::kOffAutoclear], autoclear ? qcow2::kAutoclearBitmaps : 0);
  qcow2::put_be32(&head[qcow2::kHeaderV3Size], qcow2::kExtBitmaps);
  qcow2::put_be32(&head[qcow2::kHeaderV3Size + 4], len);
  std::copy(data.begin(), data.end(), head.begin() + qcow2::kHeaderV3Size + 8);
  return head;
}

// nb_bitmaps, reserved, directory size and offset, as qemu-img writes them.
std::vector<uint8_t> bitmaps_extension_data(uint32_t count, uint32_t reserved = 0, uint64_t directory = 3 * kBlock) {
  std::vector<uint8_t> d = be32(count);
  for (const auto& part : {be32(reserved), be64(40), be64(directory)}) d.insert(d.end(), part.begin(), part.end());
  return d;
}

Qcow2Header parse_head(const std::vector<uint8_t>& head) {
  // Copied into a buffer of exactly its size, so that a read past the span is one past the heap
  // block too (the ASan build reports it).
  const std::unique_ptr<uint8_t[]> exact(new uint8_t[head.size()]);
  std::copy(head.begin(), head.end(), exact.get());
  return parse_qcow2_header(std::span<const uint8_t>(exact.get(), head.size()), uint64_t{1} << 30, "img");
}

}  // namespace

// A rollback must know about the bitmaps (it would drop them); QEMU's own images are the judge.
TEST(qcow2_header_counts_the_persistent_bitmaps_qemu_img_added) {
  TempDir dir;
  CHECK_EQ(read_qcow2_header(qemu_image_with_bitmaps(dir, "none.qcow2", {})).nb_bitmaps, 0u);
  CHECK_EQ(read_qcow2_header(qemu_image_with_bitmaps(dir, "two.qcow2", {"backup-inc0", "backup-inc1"})).nb_bitmaps, 2u);
}

// A program without bitmap support that writes an image clears autoclear bit 0; QEMU then holds
// the bitmaps inconsistent, ignores them and drops the extension, so there is nothing to keep.
// A v2 image has no autoclear field at all.
TEST(qcow2_bitmaps_qemu_ignores_are_not_counted) {
  TempDir dir;
  const std::string img = qemu_image_with_bitmaps(dir, "stale.qcow2", {"stale"});
  patch(img, qcow2::kOffAutoclear, be64(0));
  std::string out;
  CHECK_EQ(run_command("qemu-img info --output=json '" + img + "'", out), 0);
  CHECK(out.find("considered inconsistent") != std::string::npos);
  CHECK(out.find("\"bitmaps\"") == std::string::npos);  // QEMU lists none
  CHECK_EQ(read_qcow2_header(img).nb_bitmaps, 0u);
  std::vector<uint8_t> v2 = header_with_bitmaps_extension(qcow2::kBitmapsExtSize, bitmaps_extension_data(1), true);
  qcow2::put_be32(&v2[qcow2::kOffVersion], 2);
  // Version 2 extensions start right after its 72-byte header: move the extension there.
  std::copy(v2.begin() + qcow2::kHeaderV3Size, v2.begin() + qcow2::kHeaderV3Size + 32, v2.begin() + qcow2::kHeaderV2Size);
  std::fill(v2.begin() + qcow2::kHeaderV2Size + 32, v2.begin() + qcow2::kHeaderV3Size + 32, 0);
  CHECK_EQ(parse_head(v2).nb_bitmaps, 0u);
}

// What QEMU refuses to open is refused (ImageCorrupt), and no length or truncation makes the
// parser read outside the header it was given.
TEST(qcow2_hostile_bitmaps_extensions_fail_with_image_corrupt) {
  const uint32_t size = qcow2::kBitmapsExtSize;
  CHECK_EQ(parse_head(header_with_bitmaps_extension(size, bitmaps_extension_data(3), true)).nb_bitmaps, 3u);
  struct Case {
    const char* what;
    uint32_t len;
    std::vector<uint8_t> data;
    bool autoclear;
  };
  const std::vector<Case> cases = {
      {"length 0", 0, {}, true},
      {"length 4: nb_bitmaps alone", 4, be32(1), true},
      {"length 23", 23, bitmaps_extension_data(1), true},
      {"length 25", 25, bitmaps_extension_data(1), true},
      // QEMU checks the size before it looks at the autoclear bit.
      {"length 4, autoclear bit clear", 4, be32(1), false},
      {"length past the header cluster", 0xffffffffu, bitmaps_extension_data(1), true},
      {"length just past the header cluster", static_cast<uint32_t>(kBlock - qcow2::kHeaderV3Size - 7), {}, true},
      {"no bitmap", size, bitmaps_extension_data(0), true},
      {"reserved field set", size, bitmaps_extension_data(1, 1), true},
      {"directory not cluster aligned", size, bitmaps_extension_data(1, 0, 3 * kBlock + 8), true},
  };
  for (const Case& c : cases) {
    try {
      parse_head(header_with_bitmaps_extension(c.len, c.data, c.autoclear));
      ::harness::fail(__FILE__, __LINE__, std::string(c.what) + ": parsed");
    } catch (const Error& e) {
      if (e.code() != ErrorCode::ImageCorrupt) ::harness::fail(__FILE__, __LINE__, std::string(c.what) + ": " + e.code_name() + " " + e.what());
    }
  }
  // A file that ends inside the extension (read_qcow2_header hands over what it could read).
  // Cut before its type and length there is no extension; after them, its data is short.
  const std::vector<uint8_t> whole = header_with_bitmaps_extension(size, bitmaps_extension_data(2), true);
  const uint32_t data_at = qcow2::kHeaderV3Size + 8, data_end = data_at + size;
  for (uint32_t end = qcow2::kHeaderV3Size; end <= data_end; ++end) {
    const std::vector<uint8_t> cut(whole.begin(), whole.begin() + end);
    try {
      const Qcow2Header h = parse_head(cut);
      CHECK(end < data_at || end == data_end);
      CHECK_EQ(h.nb_bitmaps, (end == data_end ? 2u : 0u));
    } catch (const Error& e) {
      CHECK(end >= data_at && end < data_end);
      if (e.code() != ErrorCode::ImageCorrupt) ::harness::fail(__FILE__, __LINE__, "cut at " + std::to_string(end) + ": " + e.what());
    }
  }
}

// A rollback's new image keeps the compression type its disk was created with. Nothing is
// written compressed, so only the header says it; QEMU must accept it.
TEST(qcow2_written_image_keeps_a_zstd_compression_type) {
  TempDir dir;
  const auto digests = store_blocks(dir.path(), {pattern(kBlock, 8), {}});
  Qcow2WriteParams p;
  p.image_path = dir / "z.qcow2";
  p.store_dir = dir.path();
  p.block_size = kBlock;
  p.size_bytes = 2 * kBlock;
  p.digests = digests;
  p.compression_type = qcow2::kCompressionZstd;
  JobControl control;
  write_qcow2_image(p, control, nullptr);
  CHECK_EQ(read_qcow2_header(p.image_path).compression_type, qcow2::kCompressionZstd);
  CHECK(read_all(*open_qcow2_source(p.image_path)) == expected_content({pattern(kBlock, 8), {}}));
  std::string out;
  if (run_command("qemu-img check -q '" + p.image_path + "'", out) != 0) ::harness::fail(__FILE__, __LINE__, "qemu-img check: " + out);
  CHECK_EQ(run_command("qemu-img info --output=json '" + p.image_path + "'", out), 0);
  CHECK(out.find("\"compression-type\": \"zstd\"") != std::string::npos);
}

// Version 2 has no compression type field: zstd cannot be said there.
TEST(qcow2_writer_refuses_zstd_for_version_2) {
  TempDir dir;
  Qcow2WriteParams p;
  p.image_path = dir / "z2.qcow2";
  p.store_dir = dir.path();
  p.block_size = kBlock;
  p.size_bytes = kBlock;
  p.digests = std::vector<uint8_t>(32, 0);
  p.version = 2;
  p.compression_type = qcow2::kCompressionZstd;
  JobControl control;
  CHECK_THROWS_CODE(write_qcow2_image(p, control, nullptr), ErrorCode::InvalidArgument);
}

TEST(qemu_locks_held_are_seen_by_a_probe_and_released_with_the_descriptor) {
  TempDir dir;
  const std::string img = dir / "img";
  make_sparse_file(img, kBlock);
  CHECK(!probe_qemu_locks(img).any());
  {
    UniqueFd held = open_and_hold_qemu_locks(img);
    const QemuLocks l = probe_qemu_locks(img);
    CHECK_EQ(l.held, (1u << kQemuPermCount) - 1);
    CHECK_EQ(l.not_shared, (1u << kQemuPermCount) - 1);
    CHECK_EQ(describe_qemu_perms(kQemuPermWrite | 1), std::string("write, consistent read"));
  }
  CHECK(!probe_qemu_locks(img).any());
}
