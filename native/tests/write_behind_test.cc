#include <sys/stat.h>

#include <cstring>
#include <set>

#include "core/block_writer.h"
#include "core/store_layout.h"
#include "core/write_behind.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr size_t kBlock = 64 * 1024;

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

TEST(write_behind_stores_every_submitted_block_from_the_buffer_it_was_given) {
  TempDir dir;
  BlockWriter writer(dir.path());
  std::vector<Digest> digests;
  {
    WriteBehind behind(writer, kBlock, 2, 3);
    AlignedBuffer buf(kBlock);
    std::set<uint8_t*> seen;
    for (uint8_t seed = 1; seed <= 20; ++seed) {
      const auto data = pattern(kBlock, seed);
      std::memcpy(buf.data(), data.data(), kBlock);
      digests.push_back(sha256(buf.data(), kBlock));
      seen.insert(buf.data());
      buf = behind.submit(std::move(buf), digests.back(), kBlock, seed);
      // The scan writes into the returned buffer at once: it must not be one still being stored.
      std::memset(buf.data(), 0xee, kBlock);
    }
    behind.drain();
    CHECK_EQ(behind.blocks_written(), 20u);
    CHECK_EQ(behind.bytes_written(), 20 * kBlock);
    CHECK(seen.size() <= 4u);  // the caller's buffer and the pool of 3 circulate, nothing else
  }
  writer.sync();
  for (const Digest& d : digests) CHECK(exists(block_file_path(dir.path(), d)));
}

TEST(write_behind_counts_a_block_submitted_twice_once) {
  TempDir dir;
  BlockWriter writer(dir.path());
  WriteBehind behind(writer, kBlock, 2, 2);
  AlignedBuffer buf(kBlock);
  const auto data = pattern(kBlock, 7);
  const Digest d = sha256(data.data(), kBlock);
  for (int i = 0; i < 2; ++i) {
    std::memcpy(buf.data(), data.data(), kBlock);
    buf = behind.submit(std::move(buf), d, kBlock, static_cast<uint64_t>(i));
    behind.drain();  // the second put then sees the first's file
  }
  CHECK_EQ(behind.blocks_written(), 1u);
}

TEST(write_behind_reports_a_failed_write_with_its_block) {
  TempDir dir;
  const std::string not_a_dir = dir / "file";
  write_bytes(not_a_dir, 0, pattern(10, 1));
  BlockWriter writer(not_a_dir);  // every put fails: the store "directory" is a file
  WriteBehind behind(writer, kBlock, 1, 2);
  AlignedBuffer buf(kBlock);
  const auto data = pattern(kBlock, 3);
  std::memcpy(buf.data(), data.data(), kBlock);
  bool threw = false;
  try {
    buf = behind.submit(std::move(buf), sha256(data.data(), kBlock), kBlock, 41);
    behind.drain();
  } catch (const Error& e) {
    threw = true;
    CHECK(e.block_index.has_value() && *e.block_index == 41u);
  }
  CHECK(threw);
}

TEST(write_behind_destroyed_with_work_queued_stops_without_storing_everything) {
  TempDir dir;
  BlockWriter writer(dir.path());
  AlignedBuffer buf(kBlock);
  {
    WriteBehind behind(writer, kBlock, 1, 4);
    for (uint8_t seed = 1; seed <= 4; ++seed) {
      const auto data = pattern(kBlock, seed);
      std::memcpy(buf.data(), data.data(), kBlock);
      buf = behind.submit(std::move(buf), sha256(data.data(), kBlock), kBlock, seed);
    }
  }  // no drain: a failed scan unwinds like this, and must neither hang nor crash
  CHECK(buf.data() != nullptr);
}
