// What a writable volume's background verifier does with a damaged base block: hands the error a
// read would throw to VolumeSpec::on_verify_damage (the addon records it for repair), and lets
// go of that callback when the volume closes.
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "core/block_format.h"
#include "core/granule_file.h"
#include "core/store_layout.h"
#include "tests/base_snapshot.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"
#include "volume/cow_volume.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 1024 * 1024;  // sixteen granules per block
constexpr uint64_t kSize = 2 * kBlock;
constexpr uint64_t kG = kGranuleSize;

struct Found {
  std::mutex mutex;
  std::vector<Error> errors;
  size_t count() {
    std::lock_guard lock(mutex);
    return errors.size();
  }
  Error first() {
    std::lock_guard lock(mutex);
    return errors.at(0);
  }
};

struct Store {
  TempDir dir;
  std::vector<uint8_t> content = pattern(kSize, 33);
  std::vector<uint8_t> digests = scan_base(dir, content, kBlock, dir / "granules");

  Digest digest(uint64_t i) const {
    Digest d;
    std::memcpy(d.data(), &digests[i * kDigestSize], kDigestSize);
    return d;
  }
  std::string block_path(uint64_t i) const { return block_file_path(dir / "blocks", digest(i)); }

  std::unique_ptr<CowVolume> clone(std::shared_ptr<Found> found) const {
    const LayerFiles top{dir / "v.data", dir / "v.map"};
    create_cow_layer(top, kSize, "v");
    return std::make_unique<CowVolume>(VolumeSpec{
        .store_dir = dir / "blocks", .granule_dir = dir / "granules", .block_size = kBlock, .size_bytes = kSize,
        .base_digests = digests, .layers = {top}, .writable = true, .background_verify = true,
        .on_verify_damage = [found](const Error& e) {
          std::lock_guard lock(found->mutex);
          found->errors.push_back(e);
        }});
  }
};

// Flips one payload byte of block `i` at `x`: the file keeps its size and header.
void flip(const Store& s, uint64_t i, uint64_t x) {
  const auto file = read_file(s.block_path(i));
  write_bytes(s.block_path(i), kBlockHeaderSize + x, {static_cast<uint8_t>(file[kBlockHeaderSize + x] ^ 1)});
}

}  // namespace

TEST(verifier_reports_a_damaged_base_block_it_finds) {
  Store s;
  flip(s, 1, 9 * kG + 7);  // granule 9 of block 1
  auto found = std::make_shared<Found>();
  auto v = s.clone(found);
  const auto bytes = pattern(512, 5);
  v->write(kBlock + 100, bytes.data(), bytes.size(), false);  // a copy-up checks granule 0 only
  for (int tries = 0; tries < 2000 && found->count() == 0; ++tries) ::usleep(10'000);
  REQUIRE(found->count() >= 1);
  const Error e = found->first();
  CHECK(e.code() == ErrorCode::DigestMismatch);
  REQUIRE(e.digest.has_value());
  CHECK(*e.digest == s.digest(1));
  CHECK_EQ(e.path, s.block_path(1));
  v->close();
}

TEST(verifier_reports_nothing_for_whole_blocks) {
  Store s;
  auto found = std::make_shared<Found>();
  auto v = s.clone(found);
  const auto bytes = pattern(512, 6);
  v->write(100, bytes.data(), bytes.size(), false);
  // Verified whole by the thread, the block reads in place (store_bytes_read stops at kG + kBlock).
  for (int tries = 0; tries < 2000 && v->store_bytes_read() < kG + kBlock; ++tries) ::usleep(10'000);
  CHECK_EQ(v->store_bytes_read(), kG + kBlock);
  CHECK_EQ(found->count(), size_t{0});
  v->close();
}

TEST(verifier_callback_is_let_go_at_close) {
  Store s;
  auto found = std::make_shared<Found>();
  auto v = s.clone(found);
  CHECK(found.use_count() > 1);
  v->close();
  CHECK_EQ(found.use_count(), 1L);  // what the callback held (the addon's thread-safe function) is released
}
