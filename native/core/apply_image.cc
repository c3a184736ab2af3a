#include "core/apply_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <span>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/block_reader.h"
#include "core/digest.h"
#include "core/error.h"
#include "core/hash_in_place.h"
#include "core/image_file.h"
#include "core/store_layout.h"
#include "core/zero_detect.h"
#include "io/data_read.h"
#include "io/direct_io.h"
#include "io/extents.h"
#include "io/file_io.h"
#include "io/open_regular.h"
#include "io/page_cache.h"
#include "io/punch_hole.h"
#include "io/unique_fd.h"

namespace blocksnap {

namespace {

struct Counters {
  std::atomic<uint64_t> blocks_written{0};
  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> holes_punched{0};
  std::atomic<uint64_t> blocks_unchanged{0};
  std::atomic<uint64_t> blocks_zeroed{0};
};

// The blocks the apply wrote, with which of their pages were cached before it touched them. The
// written pages are dirty until the final fsync and the kernel drops only clean pages, so the
// ones that were not cached before are dropped after it.
class WrittenPages {
 public:
  void add(uint64_t offset, size_t len, std::vector<uint8_t> before) {
    std::lock_guard lock(mutex_);
    ranges_.push_back({offset, len, std::move(before)});
  }
  void drop(int fd) const {
    for (const Range& r : ranges_) drop_pages_not_resident(fd, r.offset, r.len, r.before);
  }

 private:
  struct Range {
    uint64_t offset;
    size_t len;
    std::vector<uint8_t> before;
  };
  std::mutex mutex_;
  std::vector<Range> ranges_;
};

// The unit of hole detection within a block, as for a flattened disk (formats/raw_writer.cc): the
// page size, the smallest hole a filesystem keeps. A block is 4 MiB, and a guest that wrote a
// page of it would otherwise get the whole block allocated back on every rollback and clone.
constexpr size_t kZeroGrain = 4096;

bool overlaps(std::span<const Extent> extents, uint64_t begin, uint64_t end) {
  for (const Extent& e : extents)
    if (e.begin < end && e.end > begin) return true;
  return false;
}

// Calls fn(begin, end, zero) for each run of whole pages of buf[0, len) that are all zero or
// all hold data, in order.
template <typename Fn>
void for_each_run(const uint8_t* buf, size_t len, Fn&& fn) {
  const auto grain_zero = [&](size_t at) { return is_all_zero(buf + at, std::min(kZeroGrain, len - at)); };
  size_t at = 0;
  while (at < len) {
    const bool zero = grain_zero(at);
    size_t end = std::min(at + kZeroGrain, len);
    while (end < len && grain_zero(end) == zero) end = std::min(end + kZeroGrain, len);
    fn(at, end, zero);
    at = end;
  }
}

// The shortest run of data pages written past the page cache. A direct write into a hole of a
// new file is a synchronous allocating write, about 150 µs here whatever its size: worth it for a
// block's worth of data, not for pages between holes, which the cache takes in microseconds and
// writes back together (a clone of an image whose pages alternate with holes went 5-10 times
// slower than `cp --sparse` with each page written directly).
constexpr size_t kDirectRunMin = size_t{1} << 20;

// Writes a block's bytes, buf[0, len), at `offset`: each run of non-zero pages in one write (a
// long one past the page cache through `direct_out` where it can), each run of zero pages left a
// hole. `current` is where the image held data there before (empty for a new file, which is all
// hole): zero pages over data are punched, or written as zeros where the filesystem cannot punch.
// Punches go first, so that a block whose data moved within it fits where it was on a full
// filesystem. Returns the bytes written: the data pages, and zero pages written as zeros; a page
// left or made a hole is not written, and a report must not count it.
uint64_t write_block_sparse(int fd, int direct_out, const uint8_t* buf, size_t len, uint64_t offset,
                            std::span<const Extent> current, const std::string& path) {
  uint64_t written = 0;
  for_each_run(buf, len, [&](size_t b, size_t f, bool zero) {
    if (zero && overlaps(current, offset + b, offset + f) && !punch_hole(fd, offset + b, f - b, path)) {
      write_at(fd, buf + b, f - b, offset + b, path);
      written += f - b;
    }
  });
  size_t cached_begin = len, cached_end = 0;
  for_each_run(buf, len, [&](size_t b, size_t f, bool zero) {
    if (zero) return;
    written += f - b;
    if (direct_out >= 0 && f - b >= kDirectRunMin && write_direct(fd, buf + b, f - b, offset + b, path, direct_out)) return;
    write_at(fd, buf + b, f - b, offset + b, path);
    cached_begin = std::min(cached_begin, b);
    cached_end = f;
  });
  // Start the writeback now, once for the block, so that the disk writes while the next blocks
  // are read and the final fsync finds little left to do.
  if (cached_begin < cached_end)
    ::sync_file_range(fd, static_cast<off_t>(offset + cached_begin), static_cast<off_t>(cached_end - cached_begin), SYNC_FILE_RANGE_WRITE);
  return written;
}

// What a rollback found a block to need by comparing the image with its target.
enum class Need : uint8_t { Nothing, Punch, Write };

// Store bytes a rollback's check leaves cached for its write pass to read again. Past this the
// check drops what it brought in, as a clone's reads do, and the write pass reads those blocks
// from the disk again: a rollback that differs in every block must not flush the host's page
// cache. 256 MiB holds the blocks of a typical rollback (a 1% change of a 16 GiB disk).
constexpr uint64_t kVerifiedCacheBudget = uint64_t{256} << 20;

// The stored blocks a rollback will write, each read and checked once before its first write.
class CheckedBlocks {
 public:
  explicit CheckedBlocks(const std::string& store_dir) : store_dir_(store_dir) {}
  CheckedBlocks(const CheckedBlocks&) = delete;
  CheckedBlocks& operator=(const CheckedBlocks&) = delete;

  // A rollback that stopped before reading a kept block again (a damaged block, a cancel, a
  // failed write) leaves the page cache as it found it all the same.
  ~CheckedBlocks() {
    for (const auto& [digest, e] : entries_) {
      if (!e.kept || e.read_again.load(std::memory_order_relaxed) || e.cached_before.empty()) continue;
      const std::string path = block_file_path(store_dir_, digest);
      UniqueFd fd(open_retry(path.c_str(), kOpenRegularFlags));
      if (fd && opened_regular(fd.get())) drop_pages_not_resident(fd.get(), 0, e.cached_before.size() * static_cast<size_t>(::sysconf(_SC_PAGESIZE)), e.cached_before);
    }
  }

  // Reads and checks the block `digest` of `len` raw bytes into `buf`, unless another block of
  // the image needing it already did. Throws what read_block throws.
  void check(const Digest& digest, size_t len, AlignedBuffer& buf) {
    Entry* e;
    {
      std::lock_guard lock(mutex_);
      const auto [it, fresh] = entries_.try_emplace(digest);
      if (!fresh) return;
      e = &it->second;  // stays valid: an unordered_map never moves its elements
      e->kept = kept_bytes_ + len <= kVerifiedCacheBudget;
      if (e->kept) kept_bytes_ += len;
    }
    BlockReadOptions options;
    options.expected_length = len;
    if (e->kept) options.cached_before_out = &e->cached_before;
    else options.keep_page_cache = true;
    read_block(store_dir_, digest, buf, options);
  }

  // The write pass's read of a checked block: checked again, and leaving the page cache as the
  // first read found it. Only once every check() has returned.
  size_t read_again(const Digest& digest, size_t len, AlignedBuffer& buf) const {
    const Entry& e = entries_.at(digest);
    e.read_again.store(true, std::memory_order_relaxed);
    BlockReadOptions options;
    options.expected_length = len;
    if (e.kept) options.cached_before_in = &e.cached_before;
    else options.keep_page_cache = true;
    return read_block(store_dir_, digest, buf, options);
  }

 private:
  struct Entry {
    bool kept = false;  // left cached by its check; `cached_before` is what was cached before
    std::vector<uint8_t> cached_before;
    mutable std::atomic<bool> read_again{false};
  };
  const std::string& store_dir_;
  std::mutex mutex_;
  uint64_t kept_bytes_ = 0;
  std::unordered_map<Digest, Entry, DigestWordHash> entries_;
};

void set_size(int fd, uint64_t size, const std::string& path) {
  int r;
  do r = ::ftruncate(fd, static_cast<off_t>(size));
  while (r != 0 && errno == EINTR);
  if (r != 0) throw Error::system(errno, "ftruncate", path);
}

// apply_image, with `touched` set once an update is about to change the image.
ApplyResult apply(const ApplyParams& p, JobControl& control, const ProgressFn& progress, bool& touched) {
  if (!is_valid_block_size(p.block_size)) throw Error(ErrorCode::InvalidArgument, "invalid block size");
  const uint64_t block_count = (p.size_bytes + p.block_size - 1) / p.block_size;
  if (p.digests.size() != block_count * kDigestSize)
    throw Error(ErrorCode::InvalidArgument, "digests must hold ceil(sizeBytes / blockSize) × 32 bytes");

  const bool update = p.mode == ApplyMode::Update;
  ImageFile image = open_image_for_write(p.image_path, !update, p.dir ? p.dir->get() : -1, p.owner, update ? p.image_id : std::nullopt);
  RemoveCreatedOnFailure cleanup(image, !update);
  const int fd = image.fd.get();
  const std::string& path = p.image_path;

  const auto block_len = [&](uint64_t i) {
    return static_cast<size_t>(std::min<uint64_t>(p.block_size, p.size_bytes - i * p.block_size));
  };
  const auto target_of = [&](uint64_t i) {
    Digest d;
    std::memcpy(d.data(), p.digests.data() + i * kDigestSize, kDigestSize);
    return d;
  };
  Counters counters;
  const auto count_written = [&](uint64_t bytes) {
    counters.blocks_written.fetch_add(1, std::memory_order_relaxed);
    counters.bytes_written.fetch_add(bytes, std::memory_order_relaxed);
  };
  const auto tag_block = [&](Error& e, uint64_t i, const Digest& target) {
    if (!e.block_index) e.block_index = i;
    if (!e.digest && !is_zero_digest(target)) e.digest = target;
  };

  // Where the apply stands, told at once: a phase change is what a caller deciding on a cancel
  // must see.
  const auto report = [&] {
    if (progress) progress(control.done(), control.total());
  };

  if (!update) {
    // Progress counts the blocks to write, each by its length: the ZERO blocks need no work.
    uint64_t to_write = 0;
    for (uint64_t i = 0; i < block_count; ++i)
      if (!is_zero_digest(target_of(i))) to_write += block_len(i);
    control.set_total(to_write);
    control.set_phase(JobPhase::Writing);
    report();
    // A clone's long runs of data go to its new file past the cache: a buffered write fills fresh
    // page-cache pages only for them to be written back and dropped after the fsync (as the short
    // runs' pages are). Each block is checked as it is read; a damaged one fails the clone, whose
    // file then never gets a name.
    const UniqueFd direct_out = open_direct_twin(fd, true);
    // Sized first, so that no write extends the file: a filesystem may preallocate past the end
    // of a file that writes through the cache extend (XFS does), which would fill the holes.
    set_size(fd, p.size_bytes, path);
    const unsigned threads = effective_threads(p.threads, block_count);
    ParallelRun run(control, block_count);
    run.run(threads, [&](ParallelRun& job) {
      AlignedBuffer buf(p.block_size);
      uint64_t i;
      while (job.next(i)) {
        const size_t len = block_len(i);
        const Digest target = target_of(i);
        try {
          if (is_zero_digest(target)) {
            counters.blocks_unchanged.fetch_add(1, std::memory_order_relaxed);
          } else {
            BlockReadOptions read_options;
            read_options.expected_length = len;
            read_options.keep_page_cache = true;
            read_block(p.store_dir, target, buf, read_options);
            count_written(write_block_sparse(fd, direct_out ? direct_out.get() : -1, buf.data(), len, i * p.block_size, {}, path));
            control.add_done(len);
          }
        } catch (Error& e) {
          tag_block(e, i, target);
          throw;
        }
      }
    }, progress);
    fsync_file(fd, path);
    name_created(image, path);
    sync_created_entry(image, path);
    cleanup.disarm();
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    return {counters.blocks_written, counters.bytes_written, 0, counters.blocks_unchanged, 0, control.total()};
  }

  // An update (a rollback) runs in two passes, and the image is touched only by the second:
  //  1. compare every block of the image with its target, as a scan reads it, and read and
  //     check the stored block of every one that differs: a damaged or missing block fails the
  //     rollback here, the image as it was (Error::image_unchanged);
  //  then before_write, so that the caller's record that the image may have changed is durable
  //  before it has;
  //  2. punch the ZERO targets that hold data, then write the blocks that differ, reading them
  //     again (from the page cache, mostly: CheckedBlocks).
  // Punches come first so that on a full filesystem a rollback that fits does not fail with
  // NoSpace because it wrote before it punched, and again on every rerun.
  // Progress follows the work, not the image's virtual size: the first pass counts the data bytes
  // it compares (a hole costs nothing), the second the length of each block it writes (a punch
  // costs next to nothing). Which blocks need writing is known only as the first pass compares
  // them, so the total starts as the most the second pass may write (every block whose target is
  // not ZERO) and drops each block found not to need it: done only grows and the total only
  // shrinks, so the share done never goes back, at the switch of phase or anywhere else.

  // The extent map is taken once: this apply is the image's only writer, and the write pass
  // touches only blocks whose extents it does not change for another.
  const ExtentMap extents = ExtentMap::scan(fd, std::min(image.size, p.size_bytes), path);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  PageCacheKeeper keeper(fd);
  // Cold blocks are read past the cache where that can be had (io/data_read.h), with two threads
  // per core as a scan does, some reading while the others hash.
  const UniqueFd direct = open_direct_twin(fd);
  const unsigned threads = effective_threads(p.threads != 0 || !direct ? p.threads : 2 * core_count(), block_count);
  uint64_t may_write = 0;
  for (uint64_t i = 0; i < block_count; ++i)
    if (!is_zero_digest(target_of(i))) may_write += block_len(i);
  control.set_total(extents.data_bytes() + may_write);
  control.set_phase(JobPhase::Comparing);
  report();

  // Pass 1. Each thread prefetches its next block; the first block of each is prefetched before
  // the pass, so that every block's residency is recorded before anything (a read-ahead, the
  // kernel's own read-ahead past a neighbour's read) brings it in. Direct reads want nothing
  // brought in ahead.
  const auto prefetch = [&](uint64_t offset) {
    if (direct || offset >= p.size_bytes) return;
    const size_t n = block_len(offset / p.block_size);
    if (extents.overlapping(offset, offset + n).empty()) return;
    keeper.touch(offset, n);
    ::posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(n), POSIX_FADV_WILLNEED);
  };
  // One element per block, each written by the one thread that claimed the block.
  std::vector<Need> needs(block_count, Need::Nothing);
  CheckedBlocks checked(p.store_dir);
  const auto unchanged = [&] { counters.blocks_unchanged.fetch_add(1, std::memory_order_relaxed); };
  InPlaceOdds odds;
  for (unsigned t = 0; t < threads; ++t) prefetch(uint64_t{t} * p.block_size);
  ParallelRun compare(control, block_count);
  compare.run(threads, [&](ParallelRun& job) {
    AlignedBuffer buf(p.block_size);
    uint64_t i;
    while (job.next(i)) {
      const uint64_t offset = i * p.block_size;
      const size_t len = block_len(i);
      const Digest target = target_of(i);
      try {
        // This thread's next block is about `threads` blocks ahead: start reading it now so the
        // disk works while this one is hashed.
        prefetch(offset + uint64_t{threads} * p.block_size);
        const auto pieces = extents.overlapping(offset, offset + len);
        // Whether the image already holds the target there, once known: a hole needs no read,
        // and a wholly cached block that already holds its target is recognised without a copy
        // (core/hash_in_place.h); anything else is read into `buf`.
        std::optional<bool> same;
        if (pieces.empty()) {
          same = is_zero_digest(target);
        } else if (pieces.size() == 1 && pieces[0].begin <= offset && pieces[0].end >= offset + len &&
                   odds.worth_trying(i) && keeper.wholly_resident(offset, len)) {
          if (const std::optional<InPlaceHash> h = hash_in_place(fd, offset, len)) {
            same = h->zero ? is_zero_digest(target) : h->digest == target;
            odds.record(*same);
          }
        }
        if (!same) {
          const std::vector<uint8_t> cached_before = keeper.before_read(offset, len);
          read_data_range(fd, direct ? direct.get() : -1, pieces, offset, len, buf.data(), cached_before, path);
          keeper.after_read(offset, len, cached_before);
          const bool current_zero = is_all_zero(buf.data(), len);
          same = is_zero_digest(target) ? current_zero : !current_zero && sha256(buf.data(), len) == target;
        }
        if (*same) {
          unchanged();
        } else if (is_zero_digest(target)) {
          needs[i] = Need::Punch;
        } else {
          needs[i] = Need::Write;
          checked.check(target, len, buf);
        }
        control.add_done(extents.data_bytes(offset, offset + len));
        if (needs[i] != Need::Write && !is_zero_digest(target)) control.drop_from_total(len);
      } catch (Error& e) {
        tag_block(e, i, target);
        throw;
      }
    }
  }, progress);
  // Cancelled between the passes, or while the caller recorded that the writing begins: nothing
  // was written yet.
  if (control.cancelled()) throw Error(ErrorCode::Cancelled, "the job was cancelled");
  if (p.before_write) p.before_write();
  if (control.cancelled()) throw Error(ErrorCode::Cancelled, "the job was cancelled");

  std::vector<uint64_t> punches;
  std::vector<uint64_t> writes;
  for (uint64_t i = 0; i < block_count; ++i) {
    if (needs[i] == Need::Punch) punches.push_back(i);
    else if (needs[i] == Need::Write) writes.push_back(i);
  }
  control.set_phase(JobPhase::Writing);
  report();

  // Pass 2. Shrink before writing so that no block is written into a tail about to be cut;
  // growing is left to the end, where the new tail becomes a hole. A failed ftruncate changes
  // nothing, so an image whose size cannot change (a FUSE file without truncate, one over the
  // file size limit) is left as it was when resizing is the first change, or the only one.
  const bool shrink = image.size > p.size_bytes;
  if (shrink) set_size(fd, p.size_bytes, path);
  touched = shrink || !punches.empty() || !writes.empty();
  ParallelRun punch(control, punches.size());
  punch.run(effective_threads(p.threads, punches.size()), [&](ParallelRun& job) {
    std::vector<uint8_t> zeros;
    uint64_t k;
    while (job.next(k)) {
      const uint64_t i = punches[k];
      const size_t len = block_len(i);
      if (punch_hole(fd, i * p.block_size, len, path)) {
        counters.holes_punched.fetch_add(1, std::memory_order_relaxed);
      } else {
        zeros.resize(len);
        write_at(fd, zeros.data(), len, i * p.block_size, path);
        counters.blocks_zeroed.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }, progress);

  // The written pages are dirty until the final fsync and the kernel drops only clean pages, so
  // the ones that were not cached before are dropped after it.
  WrittenPages written;
  ParallelRun write(control, writes.size());
  write.run(effective_threads(p.threads, writes.size()), [&](ParallelRun& job) {
    AlignedBuffer buf(p.block_size);
    uint64_t k;
    while (job.next(k)) {
      const uint64_t i = writes[k];
      const uint64_t offset = i * p.block_size;
      const size_t len = block_len(i);
      const Digest target = target_of(i);
      try {
        checked.read_again(target, len, buf);
        std::vector<uint8_t> cached_before = resident_pages(fd, offset, len);
        const uint64_t bytes = write_block_sparse(fd, -1, buf.data(), len, offset, extents.overlapping(offset, offset + len), path);
        written.add(offset, len, std::move(cached_before));
        count_written(bytes);
        control.add_done(len);
      } catch (Error& e) {
        tag_block(e, i, target);
        throw;
      }
    }
  }, progress);

  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error::system(errno, "fstat", path);
  if (static_cast<uint64_t>(st.st_size) != p.size_bytes) {
    set_size(fd, p.size_bytes, path);
    touched = true;
  }
  fsync_file(fd, path);
  // Clean now: leave the page cache as it was.
  written.drop(fd);
  return {counters.blocks_written, counters.bytes_written, counters.holes_punched, counters.blocks_unchanged,
          counters.blocks_zeroed, control.total()};
}

}  // namespace

ApplyResult apply_image(const ApplyParams& p, JobControl& control, const ProgressFn& progress) {
  bool touched = false;
  try {
    return apply(p, control, progress, touched);
  } catch (Error& e) {
    if (p.mode == ApplyMode::Update && !touched) e.image_unchanged = true;
    throw;
  }
}

}  // namespace blocksnap
