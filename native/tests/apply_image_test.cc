#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/apply_image.h"
#include "core/block_format.h"
#include "core/scan_image.h"
#include "core/store_layout.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 64 * 1024;

struct Snapshot {
  TempDir dir;
  std::string source = dir / "source";
  ScanResult scan;

  Snapshot() {
    ::mkdir((dir / "store").c_str(), 0700);
    make_sparse_file(source, 8 * kBlock + 123);
    write_bytes(source, 0, pattern(kBlock, 1));
    write_bytes(source, 3 * kBlock, pattern(2 * kBlock, 2));
    write_bytes(source, 8 * kBlock, pattern(123, 3));
    JobControl control;
    scan = scan_image({.image_path = source, .store_dir = dir / "store", .block_size = kBlock}, control, nullptr);
  }

  ApplyParams params(const std::string& target, ApplyMode mode) const {
    return {.image_path = target, .store_dir = dir / "store", .block_size = kBlock,
            .size_bytes = scan.size_bytes, .digests = scan.digests, .mode = mode, .threads = 2};
  }
};

}  // namespace

TEST(apply_create_makes_a_sparse_bit_exact_copy) {
  Snapshot s;
  JobControl control;
  const ApplyResult r = apply_image(s.params(s.dir / "copy", ApplyMode::Create), control, nullptr);
  CHECK_EQ(r.blocks_written, 4u);
  CHECK(read_file(s.dir / "copy") == read_file(s.source));
  CHECK(allocated_bytes(s.dir / "copy") < 5 * kBlock);
}

TEST(apply_create_refuses_an_existing_file) {
  Snapshot s;
  JobControl control;
  CHECK_THROWS_CODE(apply_image(s.params(s.source, ApplyMode::Create), control, nullptr), ErrorCode::FileExists);
}

TEST(apply_update_writes_only_changed_blocks_and_punches_zero_targets) {
  Snapshot s;
  const std::string target = s.dir / "target";
  write_bytes(target, 0, read_file(s.source));
  write_bytes(target, 3 * kBlock, pattern(10, 9));      // changed data block
  write_bytes(target, 6 * kBlock, pattern(kBlock, 8));  // data where the snapshot has ZERO
  write_bytes(target, 10 * kBlock, pattern(10, 7));     // beyond the snapshot's size
  JobControl control;
  const ApplyResult r = apply_image(s.params(target, ApplyMode::Update), control, nullptr);
  CHECK_EQ(r.blocks_written, 1u);
  CHECK_EQ(r.holes_punched, 1u);
  CHECK_EQ(r.blocks_unchanged, 7u);
  CHECK(read_file(target) == read_file(s.source));
}

TEST(apply_never_writes_a_block_that_fails_its_digest) {
  Snapshot s;
  Digest d;
  std::memcpy(d.data(), s.scan.digests.data() + 3 * kDigestSize, kDigestSize);
  write_bytes(block_file_path(s.dir / "store", d), kBlockHeaderSize + 77, {0});
  const std::string target = s.dir / "target";
  make_sparse_file(target, s.scan.size_bytes);
  JobControl control;
  try {
    apply_image(s.params(target, ApplyMode::Update), control, nullptr);
    harness::fail(__FILE__, __LINE__, "no error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::DigestMismatch);
    CHECK(e.block_index && *e.block_index == 3u);
    CHECK(e.digest && *e.digest == d);
  }
  const auto bytes = read_file(target);
  CHECK(std::all_of(bytes.begin() + 3 * kBlock, bytes.begin() + 4 * kBlock, [](uint8_t b) { return b == 0; }));
}

TEST(apply_create_removes_the_file_when_it_fails) {
  Snapshot s;
  Digest d;
  std::memcpy(d.data(), s.scan.digests.data(), kDigestSize);
  ::unlink(block_file_path(s.dir / "store", d).c_str());
  JobControl control;
  CHECK_THROWS_CODE(apply_image(s.params(s.dir / "copy", ApplyMode::Create), control, nullptr), ErrorCode::BlockMissing);
  CHECK(::access((s.dir / "copy").c_str(), F_OK) != 0);
}
