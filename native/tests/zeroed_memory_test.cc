// Per-block and per-granule state sized by the disk (volume/zeroed_memory.h) costs memory for what
// it holds, not for the disk's size: a fresh layer's map and a sparse disk's base view.
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/digest.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"
#include "volume/base_view.h"
#include "volume/cow_format.h"
#include "volume/cow_map.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

// Resident memory of this process, from /proc/self/status.
uint64_t resident_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

constexpr uint64_t kSlack = uint64_t{8} << 20;

}  // namespace

// A fresh layer's bitmap is all clear: open, it costs the memory of the pages holding a set bit,
// not the bitmap's size (32 MiB per TiB of disk).
TEST(zeroed_memory_of_a_fresh_layer_map_is_not_resident) {
  TempDir dir;
  const std::string path = dir / "m.map";
  const uint64_t size = uint64_t{4} << 40;  // a 128 MiB bitmap
  CowMap::create(path, size, "layer-1");
  const uint64_t before = resident_bytes();
  CowMap m(path, size, true);
  for (uint64_t g = 0; g < m.granules(); g += m.granules() / 16) m.set(g);
  CHECK(!m.any_set(1, m.granules() / 16));
  CHECK_EQ(m.set_count(), 16u);
  CHECK(resident_bytes() < before + kSlack);
}

// A sparse disk's view is mostly ZERO: the volume copies the other digests only, and a rebase
// carries over only the verified state there is.
TEST(zeroed_memory_of_a_sparse_base_view_is_its_data_blocks_only) {
  TempDir dir;
  const uint64_t block = uint64_t{4} << 20;
  const uint64_t size = uint64_t{4} << 40;  // 1 Mi blocks: 32 MiB of digests
  std::vector<uint8_t> digests((size / block) * kDigestSize, 0);
  for (uint64_t i = 0; i < size / block; i += size / block / 16) digests[i * kDigestSize + 3] = 0x5a;
  auto cache = std::make_shared<BlockFileCache>(dir / "blocks", dir / "granules");
  const uint64_t before = resident_bytes();
  BaseView first(cache, block, size, digests, nullptr);
  BaseView second(cache, block, size, digests, &first);
  CHECK(resident_bytes() < before + kSlack);
  CHECK(!second.zero_block(0));
  CHECK(second.zero_block(1));
  CHECK(second.digest(size / block / 16)[3] == 0x5a);
}
