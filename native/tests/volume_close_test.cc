// Closing a volume releases the block files its reads kept open, then and there: the volume
// object may live on long after (a JS wrapper not yet collected). And a volume left open but
// unread releases them once no read has used them for a while (BlockFileCache::close_idle),
// without ever cutting short a read under way: an export left idle used to keep its files, and
// their descriptors, for as long as it was served.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "core/block_format.h"
#include "tests/base_snapshot.h"
#include "tests/harness.h"
#include "tests/open_fds.h"
#include "tests/temp_dir.h"
#include "volume/base_view.h"
#include "volume/cow_volume.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = kMinBlockSize;
constexpr uint64_t kBlocks = 50;
constexpr uint64_t kSize = kBlocks * kBlock;

// A base of kBlocks distinct blocks, none ZERO, so that reading the volume opens every block file.
struct Base {
  TempDir dir;
  std::vector<uint8_t> content = pattern(kSize, 3);
  std::vector<uint8_t> digests;

  Base() {
    for (uint32_t n = 0; n < kBlocks; ++n) std::memcpy(&content[n * kBlock], &n, sizeof n);
    digests = scan_base(dir, content, kBlock);
  }

  VolumeSpec spec() const {
    return {.store_dir = dir / "blocks", .block_size = kBlock, .size_bytes = kSize, .base_digests = digests};
  }
};

}  // namespace

TEST(closing_a_volume_closes_the_block_files_it_read) {
  Base base;
  REQUIRE(BlockFileCache::kept_files() == 0);
  const size_t before = open_fds();
  CowVolume v(base.spec());
  std::vector<uint8_t> out(kSize);
  // The first read verifies each block whole and keeps a few payloads; the second reads the
  // blocks in place, through files kept open so that later reads open nothing.
  for (int pass = 0; pass < 2; ++pass) {
    v.read(0, kSize, out.data());
    CHECK(out == base.content);
  }
  REQUIRE(BlockFileCache::kept_files() > 0);
  CHECK_EQ(open_fds(), before + BlockFileCache::kept_files());
  v.close();
  CHECK_EQ(open_fds(), before);
  CHECK_EQ(BlockFileCache::kept_files(), size_t{0});
}

// A scan or flatten may still read a source of the volume after the close: it reads the same
// content, and holds a block file only while it reads it.
TEST(a_source_read_after_its_volume_closed_keeps_no_block_file_open) {
  Base base;
  const size_t before = open_fds();
  CowVolume v(base.spec());
  const std::unique_ptr<VolumeSource> source = v.source(0);
  v.close();
  std::vector<uint8_t> out(kSize);
  for (int pass = 0; pass < 2; ++pass) {
    source->read(0, kSize, out.data());
    CHECK(out == base.content);
  }
  CHECK_EQ(open_fds(), before);
  CHECK_EQ(BlockFileCache::kept_files(), size_t{0});
}

TEST(block_files_unused_for_the_idle_period_are_closed_and_reopened_by_the_next_read) {
  Base base;
  const size_t before = open_fds();
  CowVolume v(base.spec());
  std::vector<uint8_t> out(kSize);
  for (int pass = 0; pass < 2; ++pass) {
    v.read(0, kSize, out.data());
    REQUIRE(out == base.content);
  }
  const size_t kept = BlockFileCache::kept_files();
  REQUIRE(kept > 0);
  REQUIRE(open_fds() == before + kept);
  // Used moments ago: an hour's idle period closes none of them.
  CHECK_EQ(BlockFileCache::close_idle(std::chrono::hours(1)), size_t{0});
  CHECK_EQ(open_fds(), before + kept);
  CHECK_EQ(BlockFileCache::close_idle(std::chrono::milliseconds(0)), kept);
  CHECK_EQ(BlockFileCache::kept_files(), size_t{0});
  CHECK_EQ(open_fds(), before);
  std::fill(out.begin(), out.end(), 0);
  v.read(0, kSize, out.data());
  CHECK(out == base.content);
  v.close();
  CHECK_EQ(open_fds(), before);
}

TEST(closing_idle_block_files_while_reads_run_never_fails_a_read) {
  Base base;
  const size_t before = open_fds();
  CowVolume v(base.spec());
  std::vector<uint8_t> whole(kSize);
  v.read(0, kSize, whole.data());  // every block verified: later reads go through the kept files
  REQUIRE(whole == base.content);
  std::atomic<bool> done{false};
  std::atomic<size_t> closed{0};
  std::thread closer([&] {
    while (!done.load()) closed += BlockFileCache::close_idle(std::chrono::milliseconds(0));
  });
  size_t wrong = 0;
  size_t failed = 0;
  std::vector<uint8_t> out(4096);
  for (uint64_t n = 0; n < 20'000; ++n) {
    const uint64_t offset = ((n * 7919) % kBlocks) * kBlock + (n % 15) * 4096;
    try {
      v.read(offset, out.size(), out.data());
      if (std::memcmp(out.data(), &base.content[offset], out.size()) != 0) ++wrong;
    } catch (...) {
      ++failed;
    }
  }
  done = true;
  closer.join();
  CHECK_EQ(wrong, size_t{0});
  CHECK_EQ(failed, size_t{0});
  CHECK(closed.load() > 0);
  v.close();
  CHECK_EQ(open_fds(), before);
}
