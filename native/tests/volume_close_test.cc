// Closing a volume releases the block files its reads kept open, then and there: the volume
// object may live on long after (a JS wrapper not yet collected).
#include <cstring>
#include <memory>
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
