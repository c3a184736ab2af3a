#include "volume/scan_blocks.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/block_writer.h"
#include "core/digest.h"
#include "core/error.h"
#include "core/granule_file.h"
#include "core/parallel.h"
#include "core/write_behind.h"
#include "core/zero_detect.h"

namespace blocksnap {

namespace {

// As in scan_image: writers mostly wait in fsync; the depth bounds the blocks in flight.
constexpr unsigned kStoreWriters = 4;
constexpr unsigned kStoreDepth = 8;
// Base blocks asked of the kernel ahead of the block being read: a dirty block with writes in a
// few granules reads most of its base block, often cold, and the threads would otherwise wait for
// each of those reads in turn between hashes.
constexpr uint64_t kBasePrefetchAhead = 8;

}  // namespace

ScanBlocksResult scan_volume_blocks(const VolumeSource& source, const ScanBlocksParams& p, JobControl& control,
                                    const ProgressFn& progress) {
  const BaseView& base = source.base();
  if (p.block_size != base.block_size()) throw Error(ErrorCode::InvalidArgument, "block size differs from the volume's");
  for (uint32_t b : p.blocks)
    if (b >= base.block_count())
      throw Error(ErrorCode::InvalidArgument, "block index " + std::to_string(b) + " is past the end of the volume");

  ScanBlocksResult result;
  result.digests.assign(p.blocks.size() * kDigestSize, 0);
  control.set_total(p.blocks.size());
  // Every new block is stored past the page cache (core/block_writer.h): this snapshot's wall
  // time is what a served disk offers, and copying its first blocks into the cache took a fifth
  // of its CPU here (io/direct_io.h), against a later replication reading them from the disk.
  // The buffers are framed, laid out as block files: a cold base block is read into one whole and
  // directly (VolumeSource::read_framed_direct), and a new block leaves from it without a copy.
  BlockWriter writer(p.store_dir, 0);
  writer.set_damaged(p.damaged_digests);
  WriteBehind behind(writer, p.block_size, kStoreWriters, kStoreDepth, p.granule_dir, true);
  std::atomic<uint64_t> bytes_read{0}, zero_blocks{0};

  // Where cold base blocks are read directly, twice as many threads as cores, so that some read
  // while the others hash; otherwise the kernel is asked for the base blocks ahead.
  const bool direct = source.reads_direct();
  if (!direct)
    for (uint64_t k = 0; k < std::min<uint64_t>(kBasePrefetchAhead, p.blocks.size()); ++k) source.prefetch_base(p.blocks[k]);
  ParallelRun run(control, p.blocks.size());
  const unsigned requested = p.threads != 0 || !direct ? p.threads : 2 * core_count();
  try {
    run.run(effective_threads(requested, p.blocks.size()), [&](ParallelRun& job) {
      AlignedBuffer buf(block_frame_size(p.block_size));
      std::vector<Digest> marks;
      uint64_t k;
      while (job.next(k)) {
        if (!direct && k + kBasePrefetchAhead < p.blocks.size()) source.prefetch_base(p.blocks[k + kBasePrefetchAhead]);
        const uint64_t i = p.blocks[k];
        const uint64_t offset = i * p.block_size;
        const size_t len = static_cast<size_t>(std::min<uint64_t>(p.block_size, source.size() - offset));
        try {
          uint8_t* const payload = buf.data() + kBlockHeaderSize;
          uint64_t got_bytes = 0;
          bool zero = false;
          if (!direct || !source.read_framed_direct(i, buf.data(), got_bytes)) {
            const SourceRead got = source.read(offset, len, payload);
            got_bytes = got.bytes_read;
            zero = got.zero;
          }
          bytes_read.fetch_add(got_bytes, std::memory_order_relaxed);
          if (zero || is_all_zero(payload, len)) {
            zero_blocks.fetch_add(1, std::memory_order_relaxed);
          } else {
            const Digest digest = behind.wants_marks() ? sha256_marked(payload, len, kGranuleSize, marks) : sha256(payload, len);
            std::memcpy(result.digests.data() + k * kDigestSize, digest.data(), kDigestSize);
            if (digest != base.digest(i) || writer.needs_repair(digest)) buf = behind.submit(std::move(buf), digest, len, i, std::move(marks));
          }
          control.add_done(1);
        } catch (Error& e) {
          if (!e.block_index) e.block_index = i;
          throw;
        }
      }
    }, progress);

    behind.drain();
    result.blocks_written = behind.blocks_written();
    result.bytes_written = behind.bytes_written();
    writer.sync();
  } catch (Error& e) {
    behind.stop();
    e.written_digests = behind.written();
    throw;
  }
  result.written_digests = behind.written();
  result.repaired_digests = writer.repaired();
  result.bytes_read = bytes_read;
  result.zero_blocks = zero_blocks;
  return result;
}

}  // namespace blocksnap
