#include <algorithm>
#include <cstring>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/block_format.h"
#include "core/digest.h"
#include "tests/base_snapshot.h"
#include "tests/harness.h"
#include "tests/open_fds.h"
#include "tests/temp_dir.h"
#include "volume/base_view.h"
#include "volume/digest_lru.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

Digest numbered(uint32_t n) { return sha256(&n, sizeof n); }

}  // namespace

TEST(digest_lru_evicts_the_least_recently_used) {
  DigestLru<int> lru;
  for (uint32_t n = 0; n < 3; ++n) CHECK(lru.put(numbered(n), static_cast<int>(n)));
  REQUIRE(lru.find(numbered(0)) != nullptr);  // 0 is now the most recent: 1 goes first
  CHECK(lru.evict_oldest());
  CHECK(lru.find(numbered(1)) == nullptr);
  CHECK(lru.find(numbered(0)) != nullptr);
  CHECK(lru.find(numbered(2)) != nullptr);
  CHECK_EQ(lru.size(), size_t{2});
}

TEST(digest_lru_put_of_a_known_digest_replaces_its_value) {
  DigestLru<int> lru;
  CHECK(lru.put(numbered(7), 1));
  CHECK(!lru.put(numbered(7), 2));
  CHECK_EQ(lru.size(), size_t{1});
  REQUIRE(lru.find(numbered(7)) != nullptr);
  CHECK_EQ(*lru.find(numbered(7)), 2);
}

TEST(digest_lru_evict_oldest_of_an_empty_map_is_refused) {
  DigestLru<int> lru;
  CHECK(!lru.evict_oldest());
}

// A volume reading more blocks than it keeps open closes the oldest: its open files stay at
// its share whatever the number of blocks, and all close with the cache.
TEST(block_file_cache_keeps_at_most_its_share_of_open_files) {
  TempDir dir;
  constexpr uint64_t kBlock = kMinBlockSize;
  constexpr uint32_t kBlocks = BlockFileCache::kMaxFiles + 16;
  std::vector<uint8_t> content(kBlocks * kBlock, 0);
  for (uint32_t n = 0; n < kBlocks; ++n) std::memcpy(&content[n * kBlock], &n, sizeof n);
  for (uint32_t n = 0; n < kBlocks; ++n) content[n * kBlock + 4] = 1;  // no block is ZERO
  const std::vector<uint8_t> digests = scan_base(dir, content, kBlock);
  std::vector<Digest> blocks(kBlocks);
  for (uint32_t n = 0; n < kBlocks; ++n) std::memcpy(blocks[n].data(), &digests[n * kDigestSize], kDigestSize);
  const std::string store = dir / "blocks";
  const size_t kept = std::min(BlockFileCache::kMaxFiles, BlockFileCache::kept_files_budget());
  const size_t before = open_fds();
  {
    BlockFileCache cache(store);
    for (const Digest& d : blocks) REQUIRE(cache.file(d) != nullptr);
    CHECK_EQ(open_fds() - before, kept);
    // The most recent files are the ones kept: reading them again opens nothing.
    for (size_t i = blocks.size() - 8; i < blocks.size(); ++i) REQUIRE(cache.file(blocks[i]) != nullptr);
    CHECK_EQ(open_fds() - before, kept);
  }
  CHECK_EQ(open_fds(), before);
}

TEST(digest_lru_erases_one_entry_and_keeps_the_order_of_the_others) {
  DigestLru<int> lru;
  for (uint32_t n = 0; n < 3; ++n) CHECK(lru.put(numbered(n), static_cast<int>(n)));
  CHECK(lru.erase(numbered(1)));
  CHECK(!lru.erase(numbered(1)));
  CHECK_EQ(lru.size(), size_t{2});
  CHECK(lru.find(numbered(1)) == nullptr);
  CHECK(lru.evict_oldest());  // 0, the least recent left
  CHECK(lru.find(numbered(0)) == nullptr);
  REQUIRE(lru.find(numbered(2)) != nullptr);
  CHECK_EQ(*lru.find(numbered(2)), 2);
}

TEST(digest_lru_evicts_the_entries_unused_since_a_cutoff_and_keeps_those_used_after) {
  DigestLru<int> lru;
  for (uint32_t n = 0; n < 3; ++n) CHECK(lru.put(numbered(n), static_cast<int>(n)));
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const auto cutoff = DigestLru<int>::Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  REQUIRE(lru.find(numbered(1)) != nullptr);  // used after the cutoff
  CHECK(lru.put(numbered(3), 3));
  const std::vector<int> out = lru.evict_unused_since(cutoff);
  CHECK(out == (std::vector<int>{0, 2}));
  CHECK_EQ(lru.size(), size_t{2});
  CHECK(lru.find(numbered(1)) != nullptr);
  CHECK(lru.find(numbered(3)) != nullptr);
  CHECK(lru.evict_unused_since(cutoff).empty());
}
