#include "formats/raw_writer.h"

#include <algorithm>
#include <atomic>

#include "core/aligned_buffer.h"
#include "core/error.h"
#include "core/image_file.h"
#include "core/zero_detect.h"
#include "io/file_io.h"

namespace blocksnap {

namespace {

// The unit of hole detection: the page size, the smallest hole a filesystem keeps.
constexpr size_t kZeroGrain = 4096;

// Writes the non-zero pieces of buf[0, len) at `offset`, consecutive ones in one write. Returns
// the bytes written.
uint64_t write_data_runs(int fd, const uint8_t* buf, size_t len, uint64_t offset, const std::string& path) {
  uint64_t written = 0;
  size_t run_begin = 0;
  bool in_run = false;
  for (size_t at = 0;; at += kZeroGrain) {
    const bool data = at < len && !is_all_zero(buf + at, std::min(kZeroGrain, len - at));
    if (data && !in_run) run_begin = at, in_run = true;
    if (!data && in_run) {
      const size_t run_end = std::min(at, len);
      write_at(fd, buf + run_begin, run_end - run_begin, offset + run_begin, path);
      written += run_end - run_begin;
      in_run = false;
    }
    if (at >= len) return written;
  }
}

}  // namespace

RawWriteResult write_raw_from_source(const BlockSource& source, const RawWriteParams& p, JobControl& control,
                                     const ProgressFn& progress) {
  if (p.chunk_size < kZeroGrain || p.chunk_size > (uint64_t{64} << 20) || (p.chunk_size & (p.chunk_size - 1)) != 0)
    throw Error(ErrorCode::InvalidArgument, "the read size must be a power of two from 4 KiB to 64 MiB");
  const uint64_t size = source.size();
  control.set_total(size);
  ImageFile image = open_image_for_write(p.image_path, true, p.dir ? p.dir->get() : -1, p.owner);
  RemoveCreatedOnFailure cleanup(image);
  const int fd = image.fd.get();
  const std::string& path = p.image_path;
  set_file_size(fd, size, path);  // all hole; only data is written into it

  const uint64_t chunks = size / p.chunk_size + (size % p.chunk_size != 0);
  std::atomic<uint64_t> bytes_written{0};
  ParallelRun run(control, chunks);
  run.run(effective_threads(p.threads, chunks), [&](ParallelRun& job) {
    AlignedBuffer buf(p.chunk_size);
    uint64_t c;
    while (job.next(c)) {
      const uint64_t offset = c * p.chunk_size;
      const size_t len = static_cast<size_t>(std::min(p.chunk_size, size - offset));
      if (!source.read(offset, len, buf.data()).zero)
        bytes_written.fetch_add(write_data_runs(fd, buf.data(), len, offset, path), std::memory_order_relaxed);
      control.add_done(len);
    }
  }, progress);

  fsync_file(fd, path);
  name_created(image, path);
  sync_created_entry(image, path);
  cleanup.disarm();
  RawWriteResult result;
  result.size_bytes = size;
  result.bytes_written = bytes_written;
  result.zero_bytes = size - result.bytes_written;
  return result;
}

}  // namespace blocksnap
