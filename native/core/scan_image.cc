#include "core/scan_image.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/block_writer.h"
#include "core/digest.h"
#include "core/error.h"
#include "core/image_file.h"
#include "core/zero_detect.h"
#include "io/extents.h"
#include "io/file_io.h"

namespace blocksnap {

namespace {

struct Counters {
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> zero_blocks{0};
  std::atomic<uint64_t> blocks_written{0};
  std::atomic<uint64_t> bytes_written{0};
};

// Fills buf[0, len) with the image bytes at `offset`, reading only the data extents. Returns the
// number of bytes read from disk.
uint64_t read_block_data(int fd, const std::string& path, std::span<const Extent> pieces, uint64_t offset,
                         size_t len, uint8_t* buf) {
  const uint64_t end = offset + len;
  const bool fully_data = pieces.size() == 1 && pieces[0].begin <= offset && pieces[0].end >= end;
  if (!fully_data) std::memset(buf, 0, len);
  uint64_t read = 0;
  for (const Extent& e : pieces) {
    const uint64_t b = std::max(e.begin, offset), f = std::min(e.end, end);
    const size_t want = static_cast<size_t>(f - b);
    const size_t got = read_at(fd, buf + (b - offset), want, b, path);
    // The image shrank since it was measured: what is gone reads as zeros, like a hole.
    if (got < want) std::memset(buf + (b - offset) + got, 0, want - got);
    read += got;
  }
  return read;
}

}  // namespace

ScanResult scan_image(const ScanParams& p, JobControl& control, const ProgressFn& progress) {
  if (!is_valid_block_size(p.block_size)) throw Error(ErrorCode::InvalidArgument, "invalid block size");
  if (p.parent_digests.size() % kDigestSize != 0)
    throw Error(ErrorCode::InvalidArgument, "parent digests must be a multiple of 32 bytes");

  ImageFile image = open_image_for_read(p.image_path);
  const int fd = image.fd.get();
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  ScanResult result;
  result.size_bytes = image.size;
  result.block_count = (image.size + p.block_size - 1) / p.block_size;
  result.digests.assign(result.block_count * kDigestSize, 0);
  control.set_total(image.size);

  const ExtentMap extents = ExtentMap::scan(fd, image.size, p.image_path);
  const uint64_t parent_count = p.parent_digests.size() / kDigestSize;
  std::optional<BlockWriter> writer;
  if (p.write_blocks) writer.emplace(p.store_dir);

  const unsigned threads = effective_threads(p.threads, result.block_count);
  Counters counters;
  ParallelRun run(control, result.block_count);
  run.run(threads, [&](ParallelRun& job) {
    AlignedBuffer buf(p.block_size);
    uint64_t i;
    while (job.next(i)) {
      const uint64_t offset = i * p.block_size;
      const size_t len = static_cast<size_t>(std::min<uint64_t>(p.block_size, image.size - offset));
      uint8_t* out = result.digests.data() + i * kDigestSize;
      try {
        auto pieces = extents.overlapping(offset, offset + len);
        if (pieces.empty()) {
          counters.zero_blocks.fetch_add(1, std::memory_order_relaxed);
          control.add_done(len);
          continue;
        }
        // This thread's next block is about `threads` blocks ahead: start its readahead now so
        // the disk works while this one is hashed.
        const uint64_t ahead = offset + uint64_t{threads} * p.block_size;
        if (ahead < image.size && !extents.overlapping(ahead, ahead + p.block_size).empty())
          ::posix_fadvise(fd, static_cast<off_t>(ahead), static_cast<off_t>(p.block_size), POSIX_FADV_WILLNEED);

        counters.bytes_read.fetch_add(read_block_data(fd, p.image_path, pieces, offset, len, buf.data()),
                                      std::memory_order_relaxed);
        if (is_all_zero(buf.data(), len)) {
          counters.zero_blocks.fetch_add(1, std::memory_order_relaxed);
          control.add_done(len);
          continue;
        }
        const Digest digest = sha256(buf.data(), len);
        std::memcpy(out, digest.data(), kDigestSize);
        const bool same_as_parent =
            i < parent_count && std::memcmp(p.parent_digests.data() + i * kDigestSize, out, kDigestSize) == 0;
        if (writer && !same_as_parent && writer->put(digest, buf.data(), len)) {
          counters.blocks_written.fetch_add(1, std::memory_order_relaxed);
          counters.bytes_written.fetch_add(len, std::memory_order_relaxed);
        }
        control.add_done(len);
      } catch (Error& e) {
        if (!e.block_index) e.block_index = i;
        throw;
      }
    }
  }, progress);

  if (writer) writer->sync();

  result.bytes_read = counters.bytes_read;
  result.zero_blocks = counters.zero_blocks;
  result.blocks_written = counters.blocks_written;
  result.bytes_written = counters.bytes_written;
  return result;
}

}  // namespace blocksnap
