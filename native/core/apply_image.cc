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
#include "core/zero_detect.h"
#include "io/data_read.h"
#include "io/direct_io.h"
#include "io/extents.h"
#include "io/file_io.h"
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

// Writes a block's bytes, buf[0, len), at `offset`: each run of non-zero pages in one write (past
// the page cache through `direct_out` where it can), each run of zero pages left a hole. `current`
// is where the image held data there before (empty for a new file, which is all hole): zero
// pages over data are punched, or written as zeros where the filesystem cannot punch. Punches
// go first, so that a block whose data moved within it fits where it was on a full filesystem.
void write_block_sparse(int fd, int direct_out, const uint8_t* buf, size_t len, uint64_t offset,
                        std::span<const Extent> current, const std::string& path) {
  for_each_run(buf, len, [&](size_t b, size_t f, bool zero) {
    if (zero && overlaps(current, offset + b, offset + f) && !punch_hole(fd, offset + b, f - b, path))
      write_at(fd, buf + b, f - b, offset + b, path);
  });
  for_each_run(buf, len, [&](size_t b, size_t f, bool zero) {
    if (zero) return;
    if (direct_out >= 0 && write_direct(fd, buf + b, f - b, offset + b, path, direct_out)) return;
    write_at(fd, buf + b, f - b, offset + b, path);
    // Start the writeback now, so that the disk writes while the next blocks are read and the
    // final fsync finds little left to do.
    ::sync_file_range(fd, static_cast<off_t>(offset + b), static_cast<off_t>(f - b), SYNC_FILE_RANGE_WRITE);
  });
}

void set_size(int fd, uint64_t size, const std::string& path) {
  int r;
  do r = ::ftruncate(fd, static_cast<off_t>(size));
  while (r != 0 && errno == EINTR);
  if (r != 0) throw Error::system(errno, "ftruncate", path);
}

}  // namespace

ApplyResult apply_image(const ApplyParams& p, JobControl& control, const ProgressFn& progress) {
  if (!is_valid_block_size(p.block_size)) throw Error(ErrorCode::InvalidArgument, "invalid block size");
  const uint64_t block_count = (p.size_bytes + p.block_size - 1) / p.block_size;
  if (p.digests.size() != block_count * kDigestSize)
    throw Error(ErrorCode::InvalidArgument, "digests must hold ceil(sizeBytes / blockSize) × 32 bytes");

  const bool update = p.mode == ApplyMode::Update;
  control.set_total(p.size_bytes);
  ImageFile image = open_image_for_write(p.image_path, !update, p.dir ? p.dir->get() : -1);
  RemoveCreatedOnFailure cleanup(image, !update);
  const int fd = image.fd.get();
  const std::string& path = p.image_path;

  // Shrink before writing so that no block is written into a tail about to be cut; growing is
  // left to the end, where the new tail becomes a hole.
  if (update && image.size > p.size_bytes) set_size(fd, p.size_bytes, path);

  // An update reads every data block of the image to compare it, like a scan does: the same
  // read-ahead (each thread's next block) and the same care for the host's page cache
  // (io/page_cache.h). The extent map is taken once; this apply is the image's only writer, and
  // it reads each block before it writes or punches that block.
  const ExtentMap extents = update ? ExtentMap::scan(fd, std::min(image.size, p.size_bytes), path) : ExtentMap();
  if (update) ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  PageCacheKeeper keeper(fd);
  WrittenPages written;
  // Cold blocks are read past the cache where that can be had (io/data_read.h), with two threads
  // per core as a scan does, some reading while the others hash and write.
  const UniqueFd direct = update ? open_direct_twin(fd) : UniqueFd();
  // A clone's blocks go to its new file past the cache too: a buffered write fills fresh
  // page-cache pages only for them to be written back and dropped after the fsync. A rollback
  // writes few blocks, over pages that may have been cached before, and keeps the cache path.
  const UniqueFd direct_out = update ? UniqueFd() : open_direct_twin(fd, true);

  const unsigned threads = effective_threads(p.threads != 0 || !direct ? p.threads : 2 * core_count(), block_count);
  const auto block_len = [&](uint64_t i) {
    return static_cast<size_t>(std::min<uint64_t>(p.block_size, p.size_bytes - i * p.block_size));
  };
  const auto target_of = [&](uint64_t i) {
    Digest d;
    std::memcpy(d.data(), p.digests.data() + i * kDigestSize, kDigestSize);
    return d;
  };
  // An update runs in two passes: first the blocks that may give space back (ZERO targets over
  // data), then the rest. On a full filesystem a rollback that fits must not fail with NoSpace
  // because it wrote before it punched; and it would fail the same way on every rerun, the
  // blocks it must write coming first again, so the disk could never be rolled back.
  const auto frees_space = [&](uint64_t i) {
    return is_zero_digest(target_of(i)) && !extents.overlapping(i * p.block_size, i * p.block_size + block_len(i)).empty();
  };
  bool any_frees = false;
  for (uint64_t i = 0; update && i < block_count && !any_frees; ++i) any_frees = frees_space(i);
  int pass = any_frees ? 0 : 1;
  const auto in_pass = [&](uint64_t i) { return !any_frees || frees_space(i) == (pass == 0); };

  // Each thread prefetches its next block; the first block of each is prefetched before a pass,
  // so that every block's residency is recorded before anything (a read-ahead, the kernel's own
  // read-ahead past a neighbour's read) brings it in. Direct reads want nothing brought in ahead.
  const auto prefetch = [&](uint64_t offset) {
    if (!update || direct || offset >= p.size_bytes || !in_pass(offset / p.block_size)) return;
    const size_t n = block_len(offset / p.block_size);
    if (extents.overlapping(offset, offset + n).empty()) return;
    keeper.touch(offset, n);
    ::posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(n), POSIX_FADV_WILLNEED);
  };

  Counters counters;
  InPlaceOdds odds;
  for (; pass < 2; ++pass) {
    for (unsigned t = 0; t < threads; ++t) prefetch(uint64_t{t} * p.block_size);
    ParallelRun run(control, block_count);
    run.run(threads, [&](ParallelRun& job) {
      AlignedBuffer buf(p.block_size);
      uint64_t i;
      while (job.next(i)) {
        if (!in_pass(i)) continue;
        const uint64_t offset = i * p.block_size;
        const size_t len = block_len(i);
        const Digest target = target_of(i);
        try {
          // This thread's next block is about `threads` blocks ahead: start reading it now so the
          // disk works while this one is hashed and written.
          prefetch(offset + uint64_t{threads} * p.block_size);

          // What the image holds there now, if it may matter: a hole needs no read.
          const auto pieces = update ? extents.overlapping(offset, offset + len) : std::span<const Extent>();
          const bool has_data = !pieces.empty();
          // A wholly cached block that already holds its target is recognised without a copy
          // (core/hash_in_place.h); anything else is read into `buf` below.
          if (pieces.size() == 1 && pieces[0].begin <= offset && pieces[0].end >= offset + len && odds.worth_trying(i) &&
              keeper.wholly_resident(offset, len)) {
            const std::optional<InPlaceHash> h = hash_in_place(fd, offset, len);
            const bool same = h && (h->zero ? is_zero_digest(target) : h->digest == target);
            if (h) odds.record(same);
            if (same) {
              counters.blocks_unchanged.fetch_add(1, std::memory_order_relaxed);
              control.add_done(len);
              continue;
            }
          }
          bool current_zero = true;
          std::vector<uint8_t> cached_before;
          if (has_data) {
            cached_before = keeper.before_read(offset, len);
            read_data_range(fd, direct ? direct.get() : -1, pieces, offset, len, buf.data(), cached_before, path);
            keeper.after_read(offset, len, cached_before);
            current_zero = is_all_zero(buf.data(), len);
          }

          if (is_zero_digest(target)) {
            if (current_zero) {
              counters.blocks_unchanged.fetch_add(1, std::memory_order_relaxed);
            } else {
              if (!punch_hole(fd, offset, len, path)) {
                std::memset(buf.data(), 0, len);
                write_at(fd, buf.data(), len, offset, path);
              }
              counters.holes_punched.fetch_add(1, std::memory_order_relaxed);
            }
          } else if (!current_zero && sha256(buf.data(), len) == target) {
            counters.blocks_unchanged.fetch_add(1, std::memory_order_relaxed);
          } else {
            BlockReadOptions read_options;
            read_options.expected_length = len;
            read_options.keep_page_cache = true;
            read_block(p.store_dir, target, buf, read_options);
            if (update && !has_data) cached_before = resident_pages(fd, offset, len);
            write_block_sparse(fd, direct_out ? direct_out.get() : -1, buf.data(), len, offset, pieces, path);
            if (update) written.add(offset, len, std::move(cached_before));
            counters.blocks_written.fetch_add(1, std::memory_order_relaxed);
            counters.bytes_written.fetch_add(len, std::memory_order_relaxed);
          }
          control.add_done(len);
        } catch (Error& e) {
          if (!e.block_index) e.block_index = i;
          if (!e.digest && !is_zero_digest(target)) e.digest = target;
          throw;
        }
      }
    }, progress);
  }

  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error::system(errno, "fstat", path);
  if (static_cast<uint64_t>(st.st_size) != p.size_bytes) set_size(fd, p.size_bytes, path);
  fsync_file(fd, path);
  if (!update) {
    name_created(image, path);
    sync_created_entry(image, path);
  }
  cleanup.disarm();
  // Clean now: leave the page cache as it was. A new image had nothing cached.
  if (update) written.drop(fd);
  else ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);

  ApplyResult result;
  result.blocks_written = counters.blocks_written;
  result.bytes_written = counters.bytes_written;
  result.holes_punched = counters.holes_punched;
  result.blocks_unchanged = counters.blocks_unchanged;
  return result;
}

}  // namespace blocksnap
