// Closing a volume while its other requests are still running: the addon queues close() on the
// pool like any request, so reads and writes already queued run alongside it, and nothing keeps a
// second close() out either. Each test fails under the ThreadSanitizer build (BLOCKSNAP_TSAN)
// when the close and the request share unsynchronised state.
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/granule_file.h"
#include "tests/base_snapshot.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"
#include "volume/cow_volume.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 1024 * 1024;  // sixteen granules per block
constexpr uint64_t kBlocks = 4;
constexpr uint64_t kSize = kBlocks * kBlock;
constexpr uint64_t kG = kGranuleSize;
constexpr size_t kSector = 512;

struct Store {
  TempDir dir;
  std::vector<uint8_t> content = pattern(kSize, 59);
  std::vector<uint8_t> digests = scan_base(dir, content, kBlock, dir / "granules");
  LayerFiles top{dir / "v.data", dir / "v.map"};

  Store() { create_cow_layer(top, kSize, "v"); }

  // A writable clone with granule files and its background verifier, as a served disk has.
  VolumeSpec spec(bool writable = true) const {
    return {.store_dir = dir / "blocks", .granule_dir = dir / "granules", .block_size = kBlock, .size_bytes = kSize,
            .base_digests = digests, .layers = {top}, .writable = writable, .background_verify = writable};
  }
};

// A sector's worth of bytes that differs from the base at `offset` (a sector write copies up its
// granule: it reads below, then writes the whole granule).
std::vector<uint8_t> sector_at(uint64_t offset) {
  std::vector<uint8_t> s(kSector);
  for (size_t i = 0; i < kSector; ++i) s[i] = static_cast<uint8_t>((offset / kSector + i) * 131 + 7);
  return s;
}

}  // namespace

// Writers keep copying up granules (each one queued for the background verifier) while the
// volume closes. Every write is either acknowledged before the close, and then in the layer once
// closed (the close flushes), or refused because the volume is closed.
TEST(writes_in_flight_while_a_volume_closes_are_kept_or_refused) {
  Store s;
  auto v = std::make_unique<CowVolume>(s.spec());
  std::mutex acked_mutex;
  std::vector<uint64_t> acked;
  std::atomic<int> started{0};
  std::vector<std::thread> writers;
  for (uint64_t t = 0; t < 2; ++t) {
    writers.emplace_back([&, t] {
      // Each writer a sector in a granule of its own, over all the blocks.
      for (uint64_t g = t; g < kSize / kG; g += 2) {
        const uint64_t offset = g * kG + kSector * (1 + g % 8);
        const auto bytes = sector_at(offset);
        try {
          v->write(offset, bytes.data(), bytes.size(), false);
        } catch (const std::logic_error&) {
          return;  // closed
        }
        {
          std::lock_guard lock(acked_mutex);
          acked.push_back(offset);
        }
        started.fetch_add(1);
      }
    });
  }
  while (started.load() < 4) std::this_thread::yield();
  v->close();
  for (auto& w : writers) w.join();
  v.reset();

  REQUIRE(!acked.empty());
  CowVolume reopened(s.spec(false));
  std::vector<uint8_t> got(kSector);
  int lost = 0;
  for (const uint64_t offset : acked) {
    reopened.read(offset, kSector, got.data());
    if (got != sector_at(offset)) ++lost;
  }
  CHECK_EQ(lost, 0);
  reopened.close();
}

// Two closes at once, with the background verifier and the verification read-ahead both
// running: each waits for the threads to end and returns, and the write before them is flushed.
TEST(two_closes_at_once_both_return_with_the_top_flushed) {
  for (int round = 0; round < 20; ++round) {
    Store s;
    CowVolume v(s.spec());
    const auto bytes = sector_at(kSector);
    v.write(kSector, bytes.data(), bytes.size(), false);
    // A sequential reader, so that the read-ahead thread is started and busy.
    std::vector<uint8_t> out(256 * 1024);
    v.read(0, out.size(), out.data());
    v.read(out.size(), out.size(), out.data());

    std::atomic<int> ready{0};
    std::atomic<int> failed{0};
    const auto close = [&] {
      ++ready;
      while (ready.load() < 2) {
      }
      try {
        v.close();
      } catch (...) {
        ++failed;
      }
    };
    std::thread a(close), b(close);
    a.join();
    b.join();
    CHECK_EQ(failed.load(), 0);

    CowVolume reopened(s.spec(false));
    std::vector<uint8_t> got(kSector);
    reopened.read(kSector, kSector, got.data());
    CHECK(got == bytes);
    reopened.close();
  }
}
