// Something other than a regular file under a block's name (a FIFO, a symlink, a directory):
// readers report it as a corrupt block without waiting on it or following it, and a writer that
// has the block's bytes puts a fresh file in its place.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "core/block_format.h"
#include "core/block_reader.h"
#include "core/block_writer.h"
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

struct Block {
  TempDir dir;
  std::string store = dir / "blocks";
  std::vector<uint8_t> data = pattern(70000, 3);
  Digest digest = sha256(data.data(), data.size());
  std::string path = block_file_path(store, digest);

  // Stores the block, then moves its file aside (the returned path) for something else to take its name.
  std::string store_and_move_aside() {
    ::mkdir(store.c_str(), 0700);
    BlockWriter writer(store);
    REQUIRE(writer.put(digest, data.data(), data.size()));
    writer.sync();
    const std::string aside = dir / "aside";
    REQUIRE(::rename(path.c_str(), aside.c_str()) == 0);
    return aside;
  }

  // Expects read_block to fail BlockCorrupt "not a regular file" naming the block.
  void check_read_is_corrupt() const {
    AlignedBuffer buf;
    try {
      read_block(store, digest, buf);
      harness::fail(__FILE__, __LINE__, "no error");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::BlockCorrupt);
      CHECK(std::string(e.what()).find("not a regular file") != std::string::npos);
      CHECK(e.digest && *e.digest == digest);
      CHECK_EQ(e.path, path);
    }
  }

  bool is_regular_file() const {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  }

  void check_reads_back() const {
    AlignedBuffer buf;
    REQUIRE(read_block(store, digest, buf, {.expected_length = data.size()}) == data.size());
    CHECK(std::memcmp(buf.data(), data.data(), data.size()) == 0);
  }
};

}  // namespace

TEST(block_reader_reports_a_fifo_in_place_of_a_block_as_corrupt_without_waiting_for_a_writer) {
  Block b;
  b.store_and_move_aside();
  REQUIRE(::mkfifo(b.path.c_str(), 0600) == 0);
  b.check_read_is_corrupt();  // an open without O_NONBLOCK never returns here
}

TEST(block_reader_reports_a_symlink_to_a_good_copy_in_place_of_a_block_as_corrupt) {
  Block b;
  const std::string aside = b.store_and_move_aside();
  REQUIRE(::symlink(aside.c_str(), b.path.c_str()) == 0);
  b.check_read_is_corrupt();
}

TEST(block_reader_reports_a_directory_in_place_of_a_block_as_corrupt) {
  Block b;
  b.store_and_move_aside();
  REQUIRE(::mkdir(b.path.c_str(), 0700) == 0);
  b.check_read_is_corrupt();
}

TEST(block_writer_takes_a_symlink_to_a_right_sized_file_for_missing_and_replaces_the_link) {
  Block b;
  const std::string aside = b.store_and_move_aside();
  REQUIRE(::symlink(aside.c_str(), b.path.c_str()) == 0);
  BlockWriter writer(b.store);
  CHECK(writer.missing(b.digest));
  CHECK(writer.put(b.digest, b.data.data(), b.data.size()));
  writer.sync();
  CHECK(b.is_regular_file());
  b.check_reads_back();
  struct stat st;
  CHECK(::lstat(aside.c_str(), &st) == 0 && S_ISREG(st.st_mode));  // the link's target is left alone
}

TEST(block_writer_repair_replaces_a_fifo_in_place_of_a_block) {
  Block b;
  b.store_and_move_aside();
  REQUIRE(::mkfifo(b.path.c_str(), 0600) == 0);
  BlockWriter writer(b.store);
  writer.set_damaged(std::vector<uint8_t>(b.digest.begin(), b.digest.end()));
  CHECK(writer.missing(b.digest));
  CHECK(writer.put(b.digest, b.data.data(), b.data.size()));
  writer.sync();
  CHECK(b.is_regular_file());
  b.check_reads_back();
  CHECK(writer.repaired() == std::vector<uint8_t>(b.digest.begin(), b.digest.end()));
}

TEST(block_writer_repair_removes_an_empty_directory_in_place_of_a_block) {
  Block b;
  b.store_and_move_aside();
  REQUIRE(::mkdir(b.path.c_str(), 0700) == 0);
  BlockWriter writer(b.store);
  writer.set_damaged(std::vector<uint8_t>(b.digest.begin(), b.digest.end()));
  CHECK(writer.put(b.digest, b.data.data(), b.data.size()));
  writer.sync();
  CHECK(b.is_regular_file());
  b.check_reads_back();
}

TEST(block_writer_replaces_an_empty_directory_in_place_of_a_block_nobody_marked) {
  Block b;
  b.store_and_move_aside();
  REQUIRE(::mkdir(b.path.c_str(), 0700) == 0);
  BlockWriter writer(b.store);
  CHECK(writer.missing(b.digest));
  CHECK(writer.put(b.digest, b.data.data(), b.data.size()));
  writer.sync();
  b.check_reads_back();
}

TEST(block_writer_repair_leaves_a_directory_with_something_in_it_and_says_to_remove_it) {
  Block b;
  b.store_and_move_aside();
  REQUIRE(::mkdir(b.path.c_str(), 0700) == 0);
  write_bytes(b.path + "/kept", 0, {1, 2, 3});
  BlockWriter writer(b.store);
  writer.set_damaged(std::vector<uint8_t>(b.digest.begin(), b.digest.end()));
  try {
    writer.put(b.digest, b.data.data(), b.data.size());
    harness::fail(__FILE__, __LINE__, "no error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::BlockCorrupt);
    CHECK_EQ(e.path, b.path);
    CHECK(std::string(e.what()).find(b.path + " is a directory that is not empty; remove it by hand") != std::string::npos);
  }
  CHECK(read_file(b.path + "/kept") == (std::vector<uint8_t>{1, 2, 3}));
  CHECK(writer.needs_repair(b.digest));  // a later put tries again
  CHECK(::rmdir(tmp_dir_path(b.store).c_str()) == 0);  // no temp file left behind
}

TEST(granule_file_that_is_a_fifo_is_not_loaded_and_not_waited_for) {
  Block b;
  const std::string granules = b.dir / "granules";
  ::mkdir(granules.c_str(), 0700);
  const std::string path = granule_file_path(granules, b.digest);
  ::mkdir(parent_dir(path).c_str(), 0700);
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  CHECK(!load_granule_file(granules, b.digest, b.data.size()));
}

TEST(cow_volume_read_of_a_base_block_that_is_a_fifo_is_block_corrupt) {
  TempDir dir;
  constexpr uint64_t kBlock = 256 * 1024;
  const std::vector<uint8_t> content = pattern(2 * kBlock, 8);
  const std::vector<uint8_t> digests = scan_base(dir, content, kBlock);
  Digest d;
  std::memcpy(d.data(), &digests[kDigestSize], kDigestSize);
  const std::string path = block_file_path(dir / "blocks", d);
  REQUIRE(::unlink(path.c_str()) == 0);
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  const LayerFiles top{dir / "top.data", dir / "top.map"};
  create_cow_layer(top, content.size(), "top");
  CowVolume v(VolumeSpec{.store_dir = dir / "blocks", .block_size = kBlock, .size_bytes = content.size(), .base_digests = digests,
                         .layers = {top}, .writable = false});
  std::vector<uint8_t> out(4096);
  CHECK_THROWS_CODE(v.read(kBlock, out.size(), out.data()), ErrorCode::BlockCorrupt);
}
