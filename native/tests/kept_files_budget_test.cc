// The block files all volumes keep open stay within the process's budget, a quarter of
// RLIMIT_NOFILE, however many volumes read: each writable export used to keep at least 64, so
// that twenty of them under a limit of 1280 took every descriptor the daemon had.
#include <sys/resource.h>

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

// Lowers the soft RLIMIT_NOFILE for the test's span.
class SoftFdLimit {
 public:
  explicit SoftFdLimit(rlim_t soft) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit lowered = saved_;
    lowered.rlim_cur = soft;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  }
  ~SoftFdLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};

}  // namespace

TEST(volumes_over_one_base_keep_no_more_block_files_open_than_the_process_budget) {
  TempDir dir;
  std::vector<uint8_t> content = pattern(kSize, 5);
  for (uint32_t n = 0; n < kBlocks; ++n) std::memcpy(&content[n * kBlock], &n, sizeof n);  // none ZERO, all distinct
  const std::vector<uint8_t> digests = scan_base(dir, content, kBlock);
  const VolumeSpec spec{.store_dir = dir / "blocks", .block_size = kBlock, .size_bytes = kSize, .base_digests = digests};

  const SoftFdLimit limit(256);
  const size_t budget = BlockFileCache::kept_files_budget();
  REQUIRE(budget == 64);
  const size_t before = open_fds();
  std::vector<std::unique_ptr<CowVolume>> volumes;
  std::vector<uint8_t> out(kSize);
  // Eight volumes of 50 blocks each: 400 files if each kept what it read. Within the budget only
  // if the volumes that went idle close theirs for the one reading.
  for (int v = 0; v < 8; ++v) {
    volumes.push_back(std::make_unique<CowVolume>(spec));
    for (int pass = 0; pass < 2; ++pass) {  // the second pass reads in place, through kept files
      volumes.back()->read(0, kSize, out.data());
      REQUIRE(out == content);
    }
    CHECK(BlockFileCache::kept_files() <= budget);
    CHECK(open_fds() - before <= budget);
  }
  volumes.front()->read(0, kSize, out.data());
  CHECK(out == content);
  CHECK(BlockFileCache::kept_files() <= budget);
  for (auto& v : volumes) v->close();
  CHECK_EQ(BlockFileCache::kept_files(), size_t{0});
  CHECK_EQ(open_fds(), before);
}
