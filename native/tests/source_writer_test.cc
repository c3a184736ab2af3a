// The raw and qcow2 writers fed from a BlockSource (what `disk flatten` uses): content, holes,
// failure cleanup, and what QEMU itself makes of the images written (qemu-img check / compare).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/block_writer.h"
#include "core/digest.h"
#include "formats/block_source.h"
#include "formats/qcow2_reader.h"
#include "formats/qcow2_writer.h"
#include "formats/raw_writer.h"
#include "formats/store_source.h"
#include "tests/harness.h"
#include "tests/source_writes.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

// A raw image of 8 MiB + 12345 bytes: data at the start, one 4 KiB page in the middle of the
// third MiB, a 1 MiB range explicitly written as zeros (allocated, but no data), and the ragged
// tail; the rest is holes.
struct SparseImage {
  std::string path;
  uint64_t size = 8 * kMiB + 12345;
  uint64_t data_bytes = 0;
};

SparseImage make_sparse_image(const TempDir& dir) {
  SparseImage s{dir / "source.raw"};
  make_sparse_file(s.path, s.size);
  write_bytes(s.path, 0, pattern(300 * 1024, 1));
  write_bytes(s.path, 2 * kMiB + 512 * 1024, pattern(4096, 2));
  write_bytes(s.path, 5 * kMiB, std::vector<uint8_t>(kMiB, 0));
  write_bytes(s.path, 8 * kMiB, pattern(12345, 3));
  s.data_bytes = 300 * 1024 + 4096 + 12345;
  return s;
}

void check_qemu_img(const std::string& image, const std::string& reference, const std::string& reference_format) {
  std::string out;
  const int check = run_command("qemu-img check -f qcow2 '" + image + "'", out);
  if (check != 0) ::harness::fail(__FILE__, __LINE__, "qemu-img check: " + out);
  const int compare = run_command("qemu-img compare -f qcow2 -F " + reference_format + " '" + image + "' '" + reference + "'", out);
  if (compare != 0) ::harness::fail(__FILE__, __LINE__, "qemu-img compare: " + out);
}

// A qcow2 overlay made by QEMU over the sparse image, with its own writes (qemu-io commands),
// opened as a source.
struct Overlay {
  TempDir dir;
  std::string path = dir / "overlay.qcow2";
  std::unique_ptr<BlockSource> source;

  explicit Overlay(const std::string& qemu_io_commands) {
    make_sparse_image(dir);
    std::string out;
    if (run_command("qemu-img create -q -f qcow2 -b source.raw -F raw '" + path + "'", out) != 0 ||
        run_command("qemu-io -f qcow2 " + qemu_io_commands + " '" + path + "'", out) != 0)
      throw std::runtime_error("making the overlay: " + out);
    source = open_block_source(path, ImageFormat::Qcow2);
  }
};

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<uint8_t> read_source(const BlockSource& s) {
  std::vector<uint8_t> out(s.size());
  const SourceRead r = s.read(0, out.size(), out.data());
  if (r.zero) std::fill(out.begin(), out.end(), 0);
  return out;
}

}  // namespace

TEST(raw_from_a_sparse_raw_source_is_equal_and_stays_sparse) {
  TempDir dir;
  const SparseImage img = make_sparse_image(dir);
  auto source = open_block_source(img.path, ImageFormat::Raw);
  const std::string out = dir / "flat.raw";
  const RawWriteResult r = write_raw(*source, out);
  CHECK_EQ(r.size_bytes, img.size);
  CHECK_EQ(r.bytes_written, img.data_bytes);
  CHECK_EQ(r.zero_bytes, img.size - img.data_bytes);
  CHECK(read_file(out) == read_file(img.path));
  // The explicit zeros and the holes take no space: what is allocated is the data, to the page.
  CHECK(allocated_bytes(out) <= img.data_bytes + 3 * 4096);
  struct stat st;
  REQUIRE(::stat(out.c_str(), &st) == 0);
  CHECK_EQ(st.st_mode & 0777, 0600u);
}

TEST(raw_from_a_qcow2_source_with_a_backing_chain_is_flat) {
  const Overlay overlay("-c 'write -P 0x5a 3M 64k' -c 'write -z 0 64k'");
  const std::string flat = overlay.dir / "flat.raw";
  write_raw(*overlay.source, flat);
  CHECK(read_file(flat) == read_source(*overlay.source));
  std::string out;
  CHECK(run_command("qemu-img compare -f raw -F qcow2 '" + flat + "' '" + overlay.path + "'", out) == 0);
}

TEST(raw_writer_refuses_an_existing_file_and_leaves_it_alone) {
  TempDir dir;
  const SparseImage img = make_sparse_image(dir);
  auto source = open_block_source(img.path, ImageFormat::Raw);
  const std::string out = dir / "taken.raw";
  write_bytes(out, 0, pattern(100, 7));
  CHECK_THROWS_CODE(write_raw(*source, out), ErrorCode::FileExists);
  CHECK(read_file(out) == pattern(100, 7));
  CHECK_THROWS_CODE(write_raw(*source, dir / "odd.raw", 3 * 4096), ErrorCode::InvalidArgument);
  CHECK(!exists(dir / "odd.raw"));
}

TEST(raw_writer_does_not_follow_a_symlink) {
  TempDir dir;
  const SparseImage img = make_sparse_image(dir);
  auto source = open_block_source(img.path, ImageFormat::Raw);
  const std::string link = dir / "link.raw";
  REQUIRE(::symlink((dir / "elsewhere.raw").c_str(), link.c_str()) == 0);
  try {
    write_raw(*source, link);
    ::harness::fail(__FILE__, __LINE__, "wrote through a symlink");
  } catch (const Error&) {
  }
  CHECK(!exists(dir / "elsewhere.raw"));
}

TEST(raw_writer_removes_its_file_when_cancelled) {
  TempDir dir;
  const SparseImage img = make_sparse_image(dir);
  auto source = open_block_source(img.path, ImageFormat::Raw);
  RawWriteParams p;
  p.image_path = dir / "cancelled.raw";
  JobControl control;
  control.cancel();
  CHECK_THROWS_CODE(write_raw_from_source(*source, p, control, nullptr), ErrorCode::Cancelled);
  CHECK(!exists(p.image_path));
}

TEST(writers_remove_their_file_when_the_source_fails) {
  TempDir dir;
  // A snapshot whose second block is missing from the store.
  const uint64_t block = 64 * 1024;
  BlockWriter w(dir.path());
  const auto data = pattern(block, 4);
  const Digest d = sha256(data.data(), data.size());
  w.put(d, data.data(), data.size());
  w.sync();
  const auto other = pattern(block, 5);
  const Digest missing = sha256(other.data(), other.size());
  std::vector<uint8_t> digests(d.begin(), d.end());
  digests.insert(digests.end(), missing.begin(), missing.end());
  const StoreSource source(dir.path(), block, 2 * block, digests);
  try {
    write_raw(source, dir / "broken.raw", 4096 * 16);
    ::harness::fail(__FILE__, __LINE__, "raw: no error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::BlockMissing);
    CHECK(e.block_index && *e.block_index == 1);
  }
  CHECK(!exists(dir / "broken.raw"));
  CHECK_THROWS_CODE(write_qcow2(source, dir / "broken.qcow2"), ErrorCode::BlockMissing);
  CHECK(!exists(dir / "broken.qcow2"));
}

TEST(store_source_reads_any_range_verified) {
  TempDir dir;
  const uint64_t block = 64 * 1024;
  const auto a = pattern(block, 6), tail = pattern(1000, 7);
  BlockWriter w(dir.path());
  const Digest da = sha256(a.data(), a.size()), dt = sha256(tail.data(), tail.size());
  w.put(da, a.data(), a.size());
  w.put(dt, tail.data(), tail.size());
  w.sync();
  std::vector<uint8_t> digests(da.begin(), da.end());
  digests.resize(2 * kDigestSize, 0);  // block 1 is ZERO
  digests.insert(digests.end(), dt.begin(), dt.end());
  const StoreSource source(dir.path(), block, 2 * block + 1000, digests);
  std::vector<uint8_t> want = a;
  want.resize(2 * block, 0);
  want.insert(want.end(), tail.begin(), tail.end());
  std::vector<uint8_t> buf(want.size(), 0xee);
  CHECK(!source.read(100, 2 * block, buf.data()).zero);  // across all three blocks
  CHECK(std::equal(buf.begin(), buf.begin() + 2 * block, want.begin() + 100));
  CHECK(source.read(block + 5, 100, buf.data()).zero);
  CHECK_THROWS_CODE(source.read(2 * block, 1001, buf.data()), ErrorCode::InvalidArgument);
  CHECK_THROWS_CODE(StoreSource(dir.path(), block, 3 * block + 1, digests), ErrorCode::InvalidArgument);
}

TEST(qcow2_from_a_raw_source_passes_qemu_img_check_and_compare) {
  TempDir dir;
  const SparseImage img = make_sparse_image(dir);
  auto source = open_block_source(img.path, ImageFormat::Raw);
  for (uint32_t bits : {12u, 16u, 21u}) {
    const std::string out = dir / ("flat-" + std::to_string(bits) + ".qcow2");
    const Qcow2WriteResult r = write_qcow2(*source, out, bits);
    CHECK_EQ(r.size_bytes, (img.size + 511) / 512 * 512);
    CHECK_EQ(read_qcow2_header(out).cluster_bits, bits);
    check_qemu_img(out, img.path, "raw");
    auto back = open_qcow2_source(out);
    auto content = read_source(*back);
    content.resize(img.size);
    CHECK(content == read_file(img.path));
  }
}

TEST(qcow2_from_a_source_allocates_only_clusters_with_data) {
  TempDir dir;
  const SparseImage img = make_sparse_image(dir);
  auto source = open_block_source(img.path, ImageFormat::Raw);
  const std::string out = dir / "flat.qcow2";
  const Qcow2WriteResult r = write_qcow2(*source, out, 16);
  // Data: 300 KiB at 0 (5 clusters), one page at 2.5 MiB (1 cluster), 12345 bytes at 8 MiB (1).
  CHECK_EQ(r.bytes_written, uint64_t{5 * 65536 + 65536 + 12345});
  CHECK_EQ(r.blocks_written, 3u);  // of the 1 MiB chunks read, three held data
  // Header, L1, 7 data clusters, one L2 table, one refcount block, one refcount table.
  CHECK_EQ(r.file_bytes, 12 * 65536u);
}

TEST(qcow2_from_a_qcow2_chain_is_standalone_and_equal) {
  const Overlay overlay("-c 'write -P 0x33 1M 128k' -c 'write -z 0 64k'");
  const std::string flat = overlay.dir / "flat.qcow2";
  write_qcow2(*overlay.source, flat);
  CHECK(read_qcow2_header(flat).backing_file.empty());
  check_qemu_img(flat, overlay.path, "qcow2");
}

TEST(writers_make_valid_empty_images_from_an_empty_source) {
  TempDir dir;
  make_sparse_file(dir / "empty.raw", 0);
  auto source = open_block_source(dir / "empty.raw", ImageFormat::Raw);
  CHECK_EQ(write_raw(*source, dir / "flat.raw").size_bytes, 0u);
  CHECK(read_file(dir / "flat.raw").empty());
  CHECK_EQ(write_qcow2(*source, dir / "flat.qcow2").size_bytes, 0u);
  check_qemu_img(dir / "flat.qcow2", dir / "empty.raw", "raw");
  CHECK_EQ(open_qcow2_source(dir / "flat.qcow2")->size(), 0u);
}
