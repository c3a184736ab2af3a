// The written count of a copy-on-write disk (volume/written_count.h): kept by an open volume as
// its bits are set, and counted from the map files of a closed one; both must agree with the
// union of the layers' bits, each 4 KiB piece once, whatever the map versions.
#include <sys/stat.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "io/file_io.h"
#include "tests/base_snapshot.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"
#include "volume/cow_format.h"
#include "volume/cow_volume.h"
#include "volume/written_count.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 256 * 1024;
constexpr uint64_t kG = kCowGranuleSize;

struct Disk {
  TempDir dir;
  uint64_t size;
  std::vector<uint8_t> digests;
  std::vector<LayerFiles> layers;

  // A base of `size` bytes (not necessarily whole pieces) and one layer of map `version`.
  explicit Disk(uint64_t s, uint16_t version = kCowMapVersion) : size(s) {
    digests = scan_base(dir, pattern(size, 3), kBlock);
    add_layer(version);
  }

  const LayerFiles& add_layer(uint16_t version) {
    const std::string n = "l" + std::to_string(layers.size());
    layers.push_back({dir / (n + ".data"), dir / (n + ".map")});
    create_cow_layer(layers.back(), size, n, version);
    return layers.back();
  }

  VolumeSpec spec() const {
    return {.store_dir = dir / "blocks", .block_size = kBlock, .size_bytes = size, .base_digests = digests, .layers = layers, .writable = true};
  }

  std::vector<std::string> maps() const {
    std::vector<std::string> out;
    for (const auto& l : layers) out.push_back(l.map_path);
    return out;
  }
};

// The count by definition: every piece of the disk, asked of the stack one byte at a time.
uint64_t brute_force(const Disk& d) {
  VolumeSpec s = d.spec();
  s.writable = false;
  std::vector<std::shared_ptr<CowLayer>> layers;
  for (const auto& l : s.layers) layers.push_back(std::make_shared<CowLayer>(l, d.size, false));
  uint64_t bytes = 0;
  for (uint64_t p = 0; p * kG < d.size; ++p)
    if (layer_at(layers, p * kG) >= 0) bytes += std::min(kG, d.size - p * kG);
  return bytes;
}

}  // namespace

TEST(written_count_of_a_fresh_clone_is_zero_open_or_closed) {
  Disk d(4 * kBlock);
  CHECK_EQ(written_bytes_of_maps(d.maps(), d.size), uint64_t{0});
  CowVolume v(d.spec());
  CHECK_EQ(v.written_bytes(), uint64_t{0});
}

TEST(written_count_counts_writes_trims_and_zeroes_once_each_and_the_short_last_piece_short) {
  Disk d(4 * kBlock - 100);
  CowVolume v(d.spec());
  const auto bytes = pattern(512, 9);
  v.write(kG + 100, bytes.data(), bytes.size(), false);          // part of one piece: a copy-up, counts whole
  v.write(kG + 1000, bytes.data(), bytes.size(), false);         // the same piece again
  v.zero(2 * kBlock, 3 * kG, true, false);                       // a TRIM of three pieces: a hole, three bits
  v.zero(3 * kBlock, kG, false, false);                          // WRITE_ZEROES without unmap
  v.write(d.size - 10, bytes.data(), 10, false);                 // the short last piece
  const uint64_t want = 5 * kG + (kG - 100);
  CHECK_EQ(v.written_bytes(), want);
  CHECK_EQ(written_bytes_of_maps(d.maps(), d.size), uint64_t{0});  // not flushed: only in memory
  v.flush();
  CHECK_EQ(written_bytes_of_maps(d.maps(), d.size), want);
  CHECK_EQ(brute_force(d), want);
  v.close();
  CHECK_EQ(v.written_bytes(), want);  // the count at the close
}

TEST(written_count_of_a_stack_counts_each_piece_once_across_map_versions) {
  Disk d(4 * kBlock - 4096 - 100, kCowMapVersion1);  // the version 1 layer's last granule reaches past the disk
  {
    CowVolume v(d.spec());
    const auto bytes = pattern(4096, 1);
    v.write(4096, bytes.data(), bytes.size(), false);        // 64 KiB granule 0: 16 pieces
    v.write(d.size - 1, bytes.data(), 1, false);             // the last granule: fewer pieces than 16
    v.flush();
    CHECK_EQ(v.written_bytes(), 16 * kG + (d.size - 3 * kBlock - 3 * kCowGranuleSizeV1));
    CHECK_EQ(v.written_bytes(), brute_force(d));
    v.push_layer(d.add_layer(kCowMapVersion));
    v.write(8192, bytes.data(), bytes.size(), false);        // under the old granule: adds nothing
    v.write(3 * kBlock, bytes.data(), bytes.size(), false);  // over the base only: one piece
    v.flush();
    CHECK_EQ(v.written_bytes(), brute_force(d));
    CHECK_EQ(written_bytes_of_maps(d.maps(), d.size), brute_force(d));
  }
  CowVolume reopened(d.spec());  // counted afresh from two layers
  CHECK_EQ(reopened.written_bytes(), brute_force(d));
}

TEST(written_count_after_a_rebase_is_the_layers_that_stay) {
  Disk d(4 * kBlock);
  CowVolume v(d.spec());
  const auto bytes = pattern(4096, 2);
  v.write(0, bytes.data(), bytes.size(), false);
  v.write(kBlock, bytes.data(), bytes.size(), false);
  v.push_layer(d.add_layer(kCowMapVersion));
  v.write(0, bytes.data(), bytes.size(), false);
  v.write(2 * kBlock, bytes.data(), bytes.size(), false);
  CHECK_EQ(v.written_bytes(), 3 * kG);
  v.rebase(d.digests, 1);  // the frozen layer went into the base
  CHECK_EQ(v.written_bytes(), 2 * kG);
  CHECK(v.pop_empty_top() == false);
}

TEST(written_count_of_concurrent_writes_to_the_same_pieces_counts_each_once) {
  Disk d(4 * kBlock);
  CowVolume v(d.spec());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&v, t] {
      const auto bytes = pattern(512, static_cast<uint8_t>(t));
      for (uint64_t p = 0; p < 64; ++p) v.write(p * kG + 512 * static_cast<uint64_t>(t), bytes.data(), bytes.size(), false);
    });
  }
  for (auto& t : threads) t.join();
  CHECK_EQ(v.written_bytes(), 64 * kG);
}

TEST(written_count_of_random_writes_matches_the_bits_open_and_closed) {
  Disk d(4 * kBlock - 300, kCowMapVersion1);
  std::mt19937_64 rng(42);
  CowVolume v(d.spec());
  const auto bytes = pattern(20000, 4);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 40; ++i) {
      const uint64_t len = 1 + rng() % 20000;
      const uint64_t off = rng() % (d.size - len);
      if (rng() % 3 == 0) v.zero(off, len, rng() % 2 == 0, false);
      else v.write(off, bytes.data(), len, false);
    }
    v.flush();
    CHECK_EQ(v.written_bytes(), brute_force(d));
    CHECK_EQ(written_bytes_of_maps(d.maps(), d.size), brute_force(d));
    v.push_layer(d.add_layer(kCowMapVersion));
  }
}

TEST(written_count_of_maps_skips_a_missing_map_and_refuses_a_malformed_one) {
  Disk d(4 * kBlock);
  {
    CowVolume v(d.spec());
    const auto bytes = pattern(4096, 5);
    v.write(0, bytes.data(), bytes.size(), true);
  }
  auto maps = d.maps();
  maps.push_back(d.dir / "gone.map");
  CHECK_EQ(written_bytes_of_maps(maps, d.size), kG);
  try {
    written_bytes_of_maps(d.maps(), d.size + kG);  // the header says another size
    CHECK(false);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::ImageCorrupt);
  }
}

TEST(written_count_of_a_1_tib_map_reads_only_its_written_pages) {
  // A 1 TiB disk's map is 32 MiB of bits; the count reads the pages that are not holes.
  TempDir dir;
  const uint64_t size = uint64_t{1} << 40;
  const std::string path = dir / "big.map";
  CowMap::create(path, size, "big");
  CHECK_EQ(written_bytes_of_maps({path}, size), uint64_t{0});
  {
    CowMap map(path, size, true);
    CHECK(map.set(0));
    CHECK(!map.set(0));
    CHECK(map.set(map.granules() - 1));
    CHECK(map.set(map.granules() / 2));
    CHECK_EQ(map.set_count(), uint64_t{3});
    map.write_pages(map.take_dirty_pages());
  }
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < (uint64_t{1} << 20));  // still mostly a hole
  CHECK_EQ(written_bytes_of_maps({path}, size), 3 * kG);
}
