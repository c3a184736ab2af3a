#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <functional>
#include <optional>
#include <vector>

#include "core/apply_image.h"
#include "core/block_format.h"
#include "core/scan_image.h"
#include "core/store_layout.h"
#include "io/page_cache.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 64 * 1024;

Digest digest_at(const ScanResult& scan, uint64_t block) {
  Digest d;
  std::memcpy(d.data(), scan.digests.data() + block * kDigestSize, kDigestSize);
  return d;
}

std::string stored_block(const std::string& store, const ScanResult& scan, uint64_t block) {
  return block_file_path(store, digest_at(scan, block));
}

// Bit rot: the file keeps its name and size. Store files are read-only, and the tests need not
// run as root.
void damage_payload(const std::string& block_file, uint64_t offset, uint8_t byte) {
  ::chmod(block_file.c_str(), 0600);
  write_bytes(block_file, kBlockHeaderSize + offset, {byte});
}

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

  std::string stored(uint64_t block) const { return stored_block(dir / "store", scan, block); }

  // An image of the snapshot's size that holds nothing yet, to update.
  std::string blank_target() const {
    const std::string target = dir / "target";
    make_sparse_file(target, scan.size_bytes);
    return target;
  }

  // What an update of `target` throws; a test that calls this needs it to fail, so one that
  // succeeds ends the test.
  Error failed_update(const std::string& target, JobControl& control) const {
    return failed_update(params(target, ApplyMode::Update), control);
  }
  static Error failed_update(const ApplyParams& p, JobControl& control) {
    try {
      apply_image(p, control, nullptr);
    } catch (const Error& e) {
      return e;
    }
    harness::fail(__FILE__, __LINE__, "no error");
    throw harness::Abort{};
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

namespace {

struct Report {
  uint64_t done;
  uint64_t total;
  JobPhase phase;
};

// A disk of 32 blocks whose data, 4 blocks, sits at its end, snapshotted; then 2 of those blocks
// overwritten, for a rollback to write back.
struct DataAtTheEnd {
  TempDir dir;
  std::string image = dir / "image";
  ScanResult scan;

  DataAtTheEnd() {
    ::mkdir((dir / "store").c_str(), 0700);
    make_sparse_file(image, 32 * kBlock);
    write_bytes(image, 28 * kBlock, pattern(4 * kBlock, 1));
    JobControl control;
    scan = scan_image({.image_path = image, .store_dir = dir / "store", .block_size = kBlock}, control, nullptr);
    write_bytes(image, 29 * kBlock, pattern(kBlock, 2));
    write_bytes(image, 31 * kBlock, pattern(kBlock, 3));
  }

  ApplyParams params(ApplyMode mode, const std::string& target) const {
    return {.image_path = target, .store_dir = dir / "store", .block_size = kBlock, .size_bytes = scan.size_bytes,
            .digests = scan.digests, .mode = mode, .threads = 2};
  }
};

}  // namespace

TEST(apply_update_progress_counts_the_data_compared_then_the_blocks_written) {
  DataAtTheEnd d;
  ApplyParams p = d.params(ApplyMode::Update, d.image);
  JobControl control;
  std::vector<Report> reports;
  std::optional<Report> at_before_write;
  p.before_write = [&] { at_before_write = Report{control.done(), control.total(), control.phase()}; };
  const ApplyResult r = apply_image(p, control, [&](uint64_t done, uint64_t total) { reports.push_back({done, total, control.phase()}); });
  CHECK_EQ(r.blocks_written, 2u);
  CHECK_EQ(r.bytes_written, 2 * kBlock);

  // Compared: the 4 data blocks, none of the 28 holes before them; and at first the 4 blocks of
  // the snapshot that may need writing, of which the comparison finds 2 do not.
  CHECK(!reports.empty() && reports.front().phase == JobPhase::Comparing);
  CHECK(!reports.empty() && reports.front().total == 8 * kBlock);
  CHECK(at_before_write && at_before_write->phase == JobPhase::Comparing);
  CHECK(at_before_write && at_before_write->done == 4 * kBlock && at_before_write->total == 6 * kBlock);
  // Then written: the 2 blocks left in the total, the phase reported as it changes.
  const auto boundary = std::find_if(reports.begin(), reports.end(), [](const Report& x) { return x.phase == JobPhase::Writing; });
  CHECK(boundary != reports.end());
  if (boundary != reports.end()) {
    CHECK_EQ(boundary->done, 4 * kBlock);
    CHECK_EQ(boundary->total, 6 * kBlock);
    CHECK(std::all_of(boundary, reports.end(), [](const Report& x) { return x.phase == JobPhase::Writing; }));
  }
  for (size_t k = 1; k < reports.size(); ++k) {
    CHECK(reports[k].done >= reports[k - 1].done);
    // done / total never goes back: done × the earlier total against the earlier done × total.
    CHECK(static_cast<unsigned __int128>(reports[k].done) * reports[k - 1].total >=
          static_cast<unsigned __int128>(reports[k - 1].done) * reports[k].total);
  }
  CHECK_EQ(control.done(), 6 * kBlock);
  CHECK_EQ(r.progress_total, 6 * kBlock);
  CHECK(control.phase() == JobPhase::Writing);
}

TEST(apply_create_progress_counts_the_blocks_it_writes) {
  DataAtTheEnd d;
  JobControl control;
  std::vector<Report> reports;
  const ApplyResult r = apply_image(d.params(ApplyMode::Create, d.dir / "copy"), control,
                                    [&](uint64_t done, uint64_t total) { reports.push_back({done, total, control.phase()}); });
  CHECK_EQ(r.progress_total, 4 * kBlock);
  CHECK_EQ(control.done(), 4 * kBlock);
  CHECK(!reports.empty() && reports.front().phase == JobPhase::Writing);
}

namespace {

constexpr uint64_t kPageBlock = 4 * 1024 * 1024;
constexpr uint64_t kPage = 4096;

// Two 4 MiB blocks whose data pages alternate with zero pages, the first opening with a run of
// data long enough to be written past the page cache: a clone mixes both kinds of write.
struct AlternatingPages {
  TempDir dir;
  std::string source = dir / "source";
  ScanResult scan;
  uint64_t data_bytes = 0;

  AlternatingPages() {
    ::mkdir((dir / "store").c_str(), 0700);
    make_sparse_file(source, 2 * kPageBlock);
    const uint64_t long_run = kPageBlock / 4 + kPage;
    write_bytes(source, 0, pattern(long_run, 7));
    data_bytes += long_run;
    for (uint64_t at = long_run + kPage; at < 2 * kPageBlock; at += 2 * kPage) {
      write_bytes(source, at, pattern(kPage, static_cast<uint8_t>(at / kPage)));
      data_bytes += kPage;
    }
    JobControl control;
    scan = scan_image({.image_path = source, .store_dir = dir / "store", .block_size = kPageBlock}, control, nullptr);
  }

  std::string clone() const {
    const std::string copy = dir / "copy";
    JobControl control;
    apply_image({.image_path = copy, .store_dir = dir / "store", .block_size = kPageBlock, .size_bytes = scan.size_bytes,
                 .digests = scan.digests, .mode = ApplyMode::Create, .threads = 2},
                control, nullptr);
    return copy;
  }
};

}  // namespace

TEST(apply_create_of_pages_between_holes_is_bit_exact_and_allocates_only_the_data) {
  AlternatingPages a;
  const std::string copy = a.clone();
  CHECK(read_file(copy) == read_file(a.source));
  // Past the data, only the filesystem's blocks that map so many extents (ext4: 3 pages).
  CHECK(allocated_bytes(copy) < a.data_bytes + 16 * kPage);
}

TEST(apply_create_of_pages_between_holes_leaves_the_copy_uncached) {
  AlternatingPages a;
  const std::string copy = a.clone();
  const int fd = ::open(copy.c_str(), O_RDONLY | O_CLOEXEC);
  const std::vector<uint8_t> pages = resident_pages(fd, 0, static_cast<size_t>(2 * kPageBlock));
  ::close(fd);
  CHECK_EQ(blocksnap::resident_count(pages), 0u);
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
  damage_payload(s.stored(3), 77, 0);
  const std::string target = s.blank_target();
  JobControl control;
  const Error e = s.failed_update(target, control);
  CHECK(e.code() == ErrorCode::DigestMismatch);
  CHECK(e.block_index && *e.block_index == 3u);
  CHECK(e.digest && *e.digest == digest_at(s.scan, 3));
  const auto bytes = read_file(target);
  CHECK(std::all_of(bytes.begin() + 3 * kBlock, bytes.begin() + 4 * kBlock, [](uint8_t b) { return b == 0; }));
}

TEST(apply_update_checks_every_needed_block_before_it_touches_the_image) {
  Snapshot s;
  // The damaged block is the last one the image needs, and a ZERO target over data would be
  // punched: neither the blocks before it nor the punch may reach the image.
  damage_payload(s.stored(8), 5, 0xff);
  const std::string target = s.blank_target();
  write_bytes(target, 6 * kBlock, pattern(kBlock, 8));
  write_bytes(target, 8 * kBlock, pattern(123, 4));
  const std::vector<uint8_t> before = read_file(target);
  const uint64_t allocated_before = allocated_bytes(target);
  JobControl control;
  const Error e = s.failed_update(target, control);
  CHECK(e.code() == ErrorCode::DigestMismatch);
  CHECK(e.block_index && *e.block_index == 8u);
  CHECK(e.image_unchanged);
  CHECK(read_file(target) == before);
  CHECK_EQ(allocated_bytes(target), allocated_before);
}

TEST(apply_update_cancelled_before_it_writes_leaves_the_image_unchanged) {
  Snapshot s;
  const std::string target = s.blank_target();
  const std::vector<uint8_t> before = read_file(target);
  JobControl control;
  control.cancel();
  const Error e = s.failed_update(target, control);
  CHECK(e.code() == ErrorCode::Cancelled);
  CHECK(e.image_unchanged);
  CHECK(read_file(target) == before);
}

TEST(apply_update_calls_before_write_once_before_it_changes_the_image) {
  Snapshot s;
  const std::string target = s.blank_target();
  write_bytes(target, 6 * kBlock, pattern(kBlock, 8));  // punched
  const std::vector<uint8_t> before = read_file(target);
  ApplyParams p = s.params(target, ApplyMode::Update);
  int calls = 0;
  bool unchanged_then = false;
  p.before_write = [&] {
    ++calls;
    unchanged_then = read_file(target) == before;
  };
  JobControl control;
  apply_image(p, control, nullptr);
  CHECK_EQ(calls, 1);
  CHECK(unchanged_then);
  CHECK(read_file(target) == read_file(s.source));
}

namespace {

// What an update of a blank image fails with when `stop` (its before_write) stops it, checked to
// have left the image as it was and to say so.
Error stopped_at_before_write(const std::function<void(JobControl&)>& stop) {
  Snapshot s;
  const std::string target = s.blank_target();
  const std::vector<uint8_t> before = read_file(target);
  ApplyParams p = s.params(target, ApplyMode::Update);
  JobControl control;
  p.before_write = [&] { stop(control); };
  const Error e = Snapshot::failed_update(p, control);
  CHECK(e.image_unchanged);
  CHECK(read_file(target) == before);
  return e;
}

}  // namespace

TEST(apply_update_stopped_by_before_write_leaves_the_image_unchanged) {
  const Error e = stopped_at_before_write([](JobControl&) { throw Error(ErrorCode::NoSpace, "the journal could not be written"); });
  CHECK(e.code() == ErrorCode::NoSpace);
}

TEST(apply_update_cancelled_while_before_write_runs_leaves_the_image_unchanged) {
  const Error e = stopped_at_before_write([](JobControl& control) { control.cancel(); });
  CHECK(e.code() == ErrorCode::Cancelled);
}

TEST(apply_update_that_finds_a_damaged_block_never_calls_before_write) {
  Snapshot s;
  damage_payload(s.stored(8), 5, 0xff);
  const std::string target = s.blank_target();
  ApplyParams p = s.params(target, ApplyMode::Update);
  bool called = false;
  p.before_write = [&] { called = true; };
  JobControl control;
  CHECK_THROWS_CODE(apply_image(p, control, nullptr), ErrorCode::DigestMismatch);
  CHECK(!called);
}

namespace {

// Holds the file size limit (RLIMIT_FSIZE) at `bytes` while it lives: a file cannot grow past it
// (ftruncate fails with EFBIG, SIGXFSZ ignored), as a file whose size cannot change at all.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes) : old_handler_(::signal(SIGXFSZ, SIG_IGN)) {
    ::getrlimit(RLIMIT_FSIZE, &old_);
    const rlimit limit{.rlim_cur = bytes, .rlim_max = old_.rlim_max};
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit old_{};
  sighandler_t old_handler_;
};

}  // namespace

TEST(apply_update_whose_resize_fails_before_any_write_leaves_the_image_unchanged) {
  Snapshot s;
  // A snapshot whose second half is ZERO, of an image that holds its first half only: resizing
  // is the update's one change.
  const std::string longer = s.dir / "longer";
  make_sparse_file(longer, 4 * kBlock);
  write_bytes(longer, 0, pattern(kBlock, 4));
  JobControl scanned;
  const ScanResult scan = scan_image({.image_path = longer, .store_dir = s.dir / "store", .block_size = kBlock}, scanned, nullptr);
  const std::string target = s.dir / "target";
  make_sparse_file(target, 2 * kBlock);
  write_bytes(target, 0, pattern(kBlock, 4));
  const std::vector<uint8_t> before = read_file(target);
  ApplyParams p{.image_path = target, .store_dir = s.dir / "store", .block_size = kBlock, .size_bytes = scan.size_bytes,
                .digests = scan.digests, .mode = ApplyMode::Update, .threads = 2};
  JobControl control;
  const Error e = [&] {
    FileSizeLimit limit(2 * kBlock);
    return Snapshot::failed_update(p, control);
  }();
  CHECK_EQ(e.sys_errno, EFBIG);
  CHECK(e.syscall == "ftruncate");
  CHECK(e.image_unchanged);
  CHECK(read_file(target) == before);
}

TEST(apply_create_removes_the_file_when_it_fails) {
  Snapshot s;
  ::unlink(s.stored(0).c_str());
  JobControl control;
  CHECK_THROWS_CODE(apply_image(s.params(s.dir / "copy", ApplyMode::Create), control, nullptr), ErrorCode::BlockMissing);
  CHECK(::access((s.dir / "copy").c_str(), F_OK) != 0);
}

namespace {

constexpr uint64_t kBigBlock = 1024 * 1024;
constexpr uint64_t kBigCount = 12;

std::vector<size_t> resident_per_block(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const std::vector<uint8_t> pages = resident_pages(fd, 0, static_cast<size_t>(kBigBlock * kBigCount));
  ::close(fd);
  std::vector<size_t> n(kBigCount, 0);
  const size_t per_block = pages.size() / kBigCount;
  for (size_t k = 0; k < pages.size(); ++k) n[k / per_block] += pages[k] & 1;
  return n;
}

size_t resident_count(const std::string& path) {
  size_t n = 0;
  for (size_t b : resident_per_block(path)) n += b;
  return n;
}

// Written back and evicted, as an image is on a host that has not read it lately.
void evict(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// A snapshot of 12 blocks of 1 MiB (one a hole), and a copy of the image changed after it:
// blocks rewritten, one zeroed, data written into the hole.
struct ChangedImage {
  TempDir dir;
  std::string source = dir / "source";
  std::string target = dir / "target";
  ScanResult scan;

  ChangedImage() {
    ::mkdir((dir / "store").c_str(), 0700);
    make_sparse_file(source, kBigBlock * kBigCount);
    for (uint64_t b = 0; b < kBigCount; ++b)
      if (b != 7) write_bytes(source, b * kBigBlock, pattern(kBigBlock, static_cast<uint8_t>(30 + b)));
    JobControl control;
    scan = scan_image({.image_path = source, .store_dir = dir / "store", .block_size = kBigBlock}, control, nullptr);
    write_bytes(target, 0, read_file(source));
    write_bytes(target, 2 * kBigBlock + 8192, pattern(4096, 1));
    write_bytes(target, 5 * kBigBlock, pattern(kBigBlock, 2));
    write_bytes(target, 7 * kBigBlock, pattern(kBigBlock, 3));
    write_bytes(target, 9 * kBigBlock, std::vector<uint8_t>(kBigBlock, 0));
  }

  ApplyResult rollback() {
    JobControl control;
    return apply_image({.image_path = target, .store_dir = dir / "store", .block_size = kBigBlock,
                        .size_bytes = scan.size_bytes, .digests = scan.digests, .mode = ApplyMode::Update, .threads = 2},
                       control, nullptr);
  }
};

}  // namespace

TEST(apply_update_of_an_uncached_image_is_bit_exact_and_leaves_nothing_cached) {
  ChangedImage c;
  evict(c.target);
  const ApplyResult r = c.rollback();
  CHECK_EQ(r.blocks_written, 3u);  // blocks 2, 5 and 9
  CHECK_EQ(r.holes_punched, 1u);   // block 7
  CHECK_EQ(r.blocks_unchanged, kBigCount - 4);
  // Nothing, but for what the kernel's own read-ahead may bring in past a block before the
  // apply records that block's residency (a race the page-cache keeper resolves by keeping):
  // at most a block or two of the twelve, where an apply without the keeper leaves all of them.
  CHECK(resident_count(c.target) <= 2 * kBigBlock / static_cast<size_t>(::sysconf(_SC_PAGESIZE)));
  CHECK(read_file(c.target) == read_file(c.source));
}

namespace {

// The store files of the blocks a rollback of `c` writes (2, 5 and 9), evicted from the cache.
std::vector<std::string> evicted_changed_blocks(const ChangedImage& c) {
  std::vector<std::string> used;
  for (uint64_t b : {2, 5, 9}) {
    used.push_back(stored_block(c.dir / "store", c.scan, b));
    evict(used.back());
  }
  return used;
}

// The header is read before residency is taken (block_reader.cc), and its read may bring in the
// first folio (4 pages here); the rest of a block file's 257 pages must not stay cached.
bool mostly_uncached(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const std::vector<uint8_t> pages = resident_pages(fd, 0, static_cast<size_t>(st.st_size));
  ::close(fd);
  return !pages.empty() && blocksnap::resident_count(pages) <= 16u;
}

}  // namespace

TEST(apply_update_leaves_the_store_blocks_it_checked_and_wrote_uncached) {
  ChangedImage c;
  const std::vector<std::string> used = evicted_changed_blocks(c);
  const ApplyResult r = c.rollback();
  CHECK_EQ(r.blocks_written, 3u);
  // Each was read twice, checked and then written: the second read must drop what the first
  // left cached for it.
  for (const std::string& f : used) CHECK(mostly_uncached(f));
  CHECK(read_file(c.target) == read_file(c.source));
}

TEST(apply_update_stopped_by_a_damaged_block_leaves_the_blocks_it_checked_uncached) {
  ChangedImage c;
  const std::vector<std::string> used = evicted_changed_blocks(c);
  const std::vector<uint8_t> before = read_file(c.target);
  damage_payload(used.back(), 99, 0x5a);
  evict(used.back());
  CHECK_THROWS_CODE(c.rollback(), ErrorCode::DigestMismatch);
  CHECK(read_file(c.target) == before);
  // Blocks 2 and 5 were checked (and kept for a write pass that never came) before block 9 failed.
  for (size_t k = 0; k < 2; ++k) CHECK(mostly_uncached(used[k]));
}

TEST(apply_update_of_a_cached_image_is_bit_exact_and_keeps_it_cached) {
  ChangedImage c;
  evict(c.target);
  (void)read_file(c.target);
  const std::vector<size_t> cached = resident_per_block(c.target);
  const ApplyResult r = c.rollback();
  CHECK_EQ(r.blocks_written, 3u);
  CHECK_EQ(r.holes_punched, 1u);
  CHECK_EQ(r.blocks_unchanged, kBigCount - 4);
  // The punched block's pages are gone; every other block stays cached. Checked per block and
  // with room for a few pages: the host may evict some on its own meanwhile (reclaim, someone's
  // drop_caches), while a keeper at fault would drop whole blocks.
  const std::vector<size_t> after = resident_per_block(c.target);
  for (uint64_t b = 0; b < kBigCount; ++b) {
    if (b == 7) CHECK_EQ(after[b], 0u);
    else CHECK(after[b] > cached[b] / 2);
  }
  CHECK(read_file(c.target) == read_file(c.source));
}

// A block of zeros held whole in the page cache is recognised without a read (core/hash_in_place.h),
// and is the target only where the target is ZERO: zeros a guest wrote over data (written, not
// punched, so the blocks stay allocated and cached) are written back with the snapshot's data.
TEST(apply_update_writes_back_data_blocks_overwritten_with_cached_zeros) {
  ChangedImage c;
  write_bytes(c.target, 0, read_file(c.source));
  write_bytes(c.target, 0, std::vector<uint8_t>(3 * kBigBlock, 0));
  (void)read_file(c.target);
  const ApplyResult r = c.rollback();
  CHECK_EQ(r.blocks_written, 3u);
  CHECK(read_file(c.target) == read_file(c.source));
}
