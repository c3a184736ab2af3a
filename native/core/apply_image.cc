#include "core/apply_image.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/block_reader.h"
#include "core/digest.h"
#include "core/error.h"
#include "core/image_file.h"
#include "core/zero_detect.h"
#include "io/extents.h"
#include "io/file_io.h"
#include "io/punch_hole.h"

namespace blocksnap {

namespace {

struct Counters {
  std::atomic<uint64_t> blocks_written{0};
  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> holes_punched{0};
  std::atomic<uint64_t> blocks_unchanged{0};
};

// A file this apply created must not outlive a failed apply: a half-written clone that looks
// like a finished one is worse than none.
class RemoveOnFailure {
 public:
  RemoveOnFailure(const std::string& path, bool armed) : path_(path), armed_(armed) {}
  ~RemoveOnFailure() {
    if (armed_) ::unlink(path_.c_str());
  }
  void disarm() { armed_ = false; }

 private:
  const std::string& path_;
  bool armed_;
};

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
  ImageFile image = open_image_for_write(p.image_path, !update);
  RemoveOnFailure cleanup(p.image_path, !update);
  const int fd = image.fd.get();
  const std::string& path = p.image_path;

  // Shrink before writing so that no block is written into a tail about to be cut; growing is
  // left to the end, where the new tail becomes a hole.
  if (update && image.size > p.size_bytes) set_size(fd, p.size_bytes, path);

  const unsigned threads = effective_threads(p.threads, block_count);
  Counters counters;
  ParallelRun run(control, block_count);
  run.run(threads, [&](ParallelRun& job) {
    AlignedBuffer buf(p.block_size);
    uint64_t i;
    while (job.next(i)) {
      const uint64_t offset = i * p.block_size;
      const size_t len = static_cast<size_t>(std::min<uint64_t>(p.block_size, p.size_bytes - offset));
      Digest target;
      std::memcpy(target.data(), p.digests.data() + i * kDigestSize, kDigestSize);
      try {
        // What the image holds there now, if it may matter: a hole needs no read.
        const bool has_data = update && range_has_data(fd, offset, len, path);
        bool current_zero = true;
        if (has_data) {
          const size_t got = read_at(fd, buf.data(), len, offset, path);
          std::memset(buf.data() + got, 0, len - got);
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
          read_block(p.store_dir, target, buf, read_options);
          write_at(fd, buf.data(), len, offset, path);
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

  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error::system(errno, "fstat", path);
  if (static_cast<uint64_t>(st.st_size) != p.size_bytes) set_size(fd, p.size_bytes, path);
  fsync_file(fd, path);
  if (!update) fsync_dir(parent_dir(path));
  cleanup.disarm();

  ApplyResult result;
  result.blocks_written = counters.blocks_written;
  result.bytes_written = counters.bytes_written;
  result.holes_punched = counters.holes_punched;
  result.blocks_unchanged = counters.blocks_unchanged;
  return result;
}

}  // namespace blocksnap
