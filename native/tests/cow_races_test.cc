// Races between the requests of one copy-on-write volume that a serial test cannot reach: a zero
// against a copy-up of the same granule, zeros of long runs against each other, and a flush
// against a bit that is visible but not yet marked dirty.
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/base_snapshot.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"
#include "volume/cow_format.h"
#include "volume/cow_map.h"
#include "volume/cow_volume.h"

using namespace blocksnap;
using namespace testing_support;

namespace blocksnap {
struct CowMapTestAccess {
  // The state a set() of granule g is in between making the bit visible and marking its page
  // dirty, as another thread sees it.
  static void half_set(CowMap& m, uint64_t g) {
    const size_t page = (g / 8) / kCowMapPageSize;
    m.setting_[page].fetch_add(1);
    m.words_[g / 64].fetch_or(uint64_t{1} << (g % 64));
  }
  static void finish_set(CowMap& m, uint64_t g) {
    const size_t page = (g / 8) / kCowMapPageSize;
    m.dirty_[page].store(true);
    m.setting_[page].fetch_sub(1);
  }
};
}  // namespace blocksnap

namespace {

constexpr uint64_t kBlock = 256 * 1024;
constexpr uint64_t kSize = 4 * kBlock;
constexpr uint64_t kG = kCowGranuleSize;

struct Fixture {
  TempDir dir;
  std::vector<uint8_t> content = pattern(kSize, 7);
  std::vector<uint8_t> digests = scan_base(dir, content, kBlock);
  LayerFiles top{dir / "top.data", dir / "top.map"};

  Fixture() { create_cow_layer(top, kSize, "layer-1"); }

  VolumeSpec spec() const {
    return {.store_dir = dir / "blocks", .block_size = kBlock, .size_bytes = kSize, .base_digests = digests,
            .layers = {top}, .writable = true};
  }
};

// Both threads spin until the other is ready, so that their requests overlap in time.
template <typename A, typename B>
void at_once(A a, B b) {
  std::atomic<int> ready{0};
  std::thread ta([&] { ++ready; while (ready.load() < 2) {} a(); });
  std::thread tb([&] { ++ready; while (ready.load() < 2) {} b(); });
  ta.join();
  tb.join();
}

}  // namespace

// A sector write copies its granule up: it reads the old granule below, merges its 512 bytes and
// writes the whole granule. A zero of that granule in between must not be overwritten with the
// old bytes: whichever request goes first, every byte outside the write reads as zero.
TEST(cow_zero_racing_a_copy_up_never_brings_back_bytes_it_covered) {
  int stale = 0, races = 0;
  for (int round = 0; round < 10; ++round) {
    Fixture f;
    CowVolume v(f.spec());
    const auto sector = pattern(512, 9);
    for (uint64_t b = 0; b < kSize / kBlock; ++b) {
      for (uint64_t k = 1; k < kBlock / kG; k += 16) {
        const uint64_t g = b * kBlock + k * kG;
        at_once([&] { v.write(g + 1024, sector.data(), sector.size(), false); }, [&] { v.zero(g, kG, true, false); });
        std::vector<uint8_t> got(kG);
        v.read(g, kG, got.data());
        ++races;
        for (size_t i = 0; i < kG; ++i) {
          if ((i < 1024 || i >= 1536) && got[i] != 0) {
            ++stale;
            break;
          }
        }
      }
    }
  }
  CHECK(races > 0);
  CHECK_EQ(stale, 0);
}

// Zeros of runs that wrap past the last granule lock stripe, and of runs longer than all the
// stripes, take their locks in one order: many at once finish, and each reads as zero after.
TEST(cow_zeros_of_long_runs_at_once_neither_deadlock_nor_miss) {
  Fixture f;
  CowVolume v(f.spec());
  const uint64_t granules = kSize / kG;  // 256, as many as the stripes
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&v, t, granules] {
      for (int i = 0; i < 200; ++i) {
        const uint64_t first = (static_cast<uint64_t>(t) * 61 + static_cast<uint64_t>(i) * 37) % granules;
        const uint64_t count = std::min<uint64_t>(granules - first, 1 + (static_cast<uint64_t>(i) * 13 + static_cast<uint64_t>(t)) % 300);
        v.zero(first * kG, count * kG, i % 2 == 0, false);
        const auto bytes = pattern(512, static_cast<uint8_t>(i));
        v.write(((first + count / 2) % granules) * kG + 512, bytes.data(), bytes.size(), false);
      }
    });
  }
  for (auto& th : threads) th.join();
  v.zero(0, kSize, true, false);
  std::vector<uint8_t> got(kSize);
  v.read(0, kSize, got.data());
  CHECK(got == std::vector<uint8_t>(kSize, 0));
}

// A writer that finds a granule's bit set is acknowledged without touching the map; the bit may
// belong to a set() that has not marked its page dirty yet. A flush after that acknowledgement
// must still copy the page with the bit, or a crash would hide the acknowledged, flushed data.
TEST(cow_map_flush_copies_a_page_whose_set_is_under_way) {
  TempDir dir;
  const std::string path = dir / "m.map";
  CowMap::create(path, kSize, "layer-1");
  CowMap m(path, kSize, true);
  const uint64_t g = 77;
  CowMapTestAccess::half_set(m, g);
  const auto pages = m.take_dirty_pages();
  REQUIRE(pages.size() == 1);
  CHECK_EQ(pages[0].page, (g / 8) / kCowMapPageSize);
  CHECK((pages[0].bytes[g / 8] >> (g % 8)) & 1);
  m.write_pages(pages);
  CHECK(CowMap(path, kSize, false).test(g));
  // Once the set() finishes, its page is dirty again, and the next flush writes it once more.
  CowMapTestAccess::finish_set(m, g);
  CHECK_EQ(m.take_dirty_pages().size(), 1u);
  CHECK(m.take_dirty_pages().empty());
}
