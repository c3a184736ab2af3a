#include "core/scan_image.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/block_writer.h"
#include "core/digest.h"
#include "core/error.h"
#include "core/granule_file.h"
#include "core/hash_as_read.h"
#include "core/hash_in_place.h"
#include "core/write_behind.h"

namespace blocksnap {

namespace {

uint64_t elapsed_ns(std::chrono::steady_clock::time_point since) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - since).count());
}

struct Counters {
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> zero_blocks{0};
  std::atomic<uint64_t> blocks_written{0};
  std::atomic<uint64_t> bytes_written{0};
};

// Writers mostly wait in fsync, so they cost little CPU; several let the filesystem commit their
// fsyncs together. The depth bounds the blocks in flight (and the memory: depth × block size).
constexpr unsigned kStoreWriters = 4;
constexpr unsigned kStoreDepth = 8;

}  // namespace

ScanResult scan_image(const ScanParams& p, JobControl& control, const ProgressFn& progress) {
  if (!is_valid_block_size(p.block_size)) throw Error(ErrorCode::InvalidArgument, "invalid block size");
  if (p.parent_digests.size() % kDigestSize != 0)
    throw Error(ErrorCode::InvalidArgument, "parent digests must be a multiple of 32 bytes");

  const std::unique_ptr<BlockSource> source = open_block_source(p.image_path, p.format, p.checked_backing ? &*p.checked_backing : nullptr, p.image_id);
  const uint64_t size = source->size();

  ScanResult result;
  result.size_bytes = size;
  result.block_count = (size + p.block_size - 1) / p.block_size;
  // The engine refuses such an image before it starts a scan; this one may have grown since.
  if (result.block_count > kMaxBlockCount) {
    Error e(ErrorCode::ImageTooLarge, p.image_path + " has a virtual size of " + std::to_string(size) + " bytes, " +
                                          std::to_string(result.block_count) + " blocks of " + std::to_string(p.block_size) +
                                          " bytes; a snapshot holds at most " + std::to_string(kMaxBlockCount) + " blocks");
    e.path = p.image_path;
    throw e;
  }
  result.digests.assign(result.block_count * kDigestSize, 0);
  // Progress counts the bytes the scan may have to read: an image whose data sits at its end
  // must not show most of its scan done before it has read any.
  control.set_total(source->data_bytes(0, size));

  const uint64_t parent_count = p.parent_digests.size() / kDigestSize;
  std::optional<BlockWriter> writer;
  if (p.write_blocks) {
    writer.emplace(p.store_dir);
    writer->set_damaged(p.damaged_digests);
  }
  // Stores new blocks while the scan threads read and hash on (core/write_behind.h).
  std::optional<WriteBehind> behind;
  if (writer) behind.emplace(*writer, p.block_size, kStoreWriters, kStoreDepth, p.granule_dir);

  // Direct reads have no read-ahead behind them: with twice as many threads as cores, some read
  // while the others hash, and the disk always has a request (measured in bench/README.md).
  const unsigned requested = p.threads != 0 || !source->reads_direct() ? p.threads : 2 * core_count();
  const unsigned threads = effective_threads(requested, result.block_count);
  // Each thread starts the read-ahead of its next block; the first block of each starts here, so
  // that the page-cache keeper records every block's residency before anything brings it in.
  for (uint64_t k = 0; k < threads && k < result.block_count; ++k)
    source->will_need(k * p.block_size, static_cast<size_t>(std::min<uint64_t>(p.block_size, size - k * p.block_size)));
  Counters counters;
  InPlaceOdds odds;
  InPlaceSpeed speed;
  ParallelRun run(control, result.block_count);
  try {
    run.run(threads, [&](ParallelRun& job) {
      AlignedBuffer buf(p.block_size);
      std::vector<Digest> marks;
      uint64_t i;
      while (job.next(i)) {
        const uint64_t offset = i * p.block_size;
        const size_t len = static_cast<size_t>(std::min<uint64_t>(p.block_size, size - offset));
        uint8_t* out = result.digests.data() + i * kDigestSize;
        try {
          // This thread's next block is about `threads` blocks ahead: start its readahead now so
          // the disk works while this one is hashed.
          const uint64_t ahead = offset + uint64_t{threads} * p.block_size;
          if (ahead < size) source->will_need(ahead, static_cast<size_t>(std::min<uint64_t>(p.block_size, size - ahead)));

          // A block that is wholly cached and probably unchanged (or that nothing will store) is
          // hashed where it lies, without the copy into `buf`. Its digest may only confirm the
          // parent's: a block that differs is read and hashed again below, and that copy is what
          // gets stored (core/hash_in_place.h).
          const uint8_t* parent = i < parent_count ? p.parent_digests.data() + i * kDigestSize : nullptr;
          const bool parent_has_data = parent != nullptr && std::any_of(parent, parent + kDigestSize, [](uint8_t b) { return b != 0; });
          const bool in_place_eligible = !behind || (parent_has_data && odds.worth_trying(i));
          // A cached block copied instead, because copying is faster here or to time it: timed.
          // hash_cached checks residency itself; asked here, it is asked once either way.
          const bool try_in_place = in_place_eligible && speed.use_in_place(i);
          const bool time_copy = in_place_eligible && !try_in_place && source->can_hash_cached(offset, len);
          if (try_in_place) {
            const auto t0 = std::chrono::steady_clock::now();
            if (const std::optional<InPlaceHash> h = source->hash_cached(offset, len)) {
              speed.record(true, elapsed_ns(t0), len);
              // Equal to the parent's, but damaged or missing in the store: read below and stored again.
              const bool final_digest = !behind || (!h->zero && std::memcmp(parent, h->digest.data(), kDigestSize) == 0 &&
                                                    !writer->needs_repair(h->digest) && !writer->missing(h->digest));
              if (behind) odds.record(final_digest);
              if (final_digest) {
                counters.bytes_read.fetch_add(len, std::memory_order_relaxed);
                if (h->zero) counters.zero_blocks.fetch_add(1, std::memory_order_relaxed);
                else std::memcpy(out, h->digest.data(), kDigestSize);
                control.add_done(source->data_bytes(offset, len));
                continue;
              }
            }
          }

          const auto copy_start = std::chrono::steady_clock::now();
          HashAsRead hash(buf.data(), behind && behind->wants_marks() ? kGranuleSize : 0);
          const SourceRead got = source->read_in_pieces(offset, len, buf.data(), [&hash](size_t n) { hash.filled(n); });
          counters.bytes_read.fetch_add(got.bytes_read, std::memory_order_relaxed);
          if (got.zero || hash.all_zero()) {
            counters.zero_blocks.fetch_add(1, std::memory_order_relaxed);
            control.add_done(source->data_bytes(offset, len));
            continue;
          }
          const Digest digest = hash.finish(marks);
          std::memcpy(out, digest.data(), kDigestSize);
          if (time_copy) speed.record(false, elapsed_ns(copy_start), len);
          const bool same_as_parent =
              i < parent_count && std::memcmp(p.parent_digests.data() + i * kDigestSize, out, kDigestSize) == 0;
          if (behind && (!same_as_parent || writer->needs_repair(digest) || writer->missing(digest))) {
            buf = behind->submit(std::move(buf), digest, len, i, std::move(marks));
          }
          control.add_done(source->data_bytes(offset, len));
      } catch (Error& e) {
          if (!e.block_index) e.block_index = i;
          throw;
        }
      }
    }, progress);

    if (behind) {
      behind->drain();
      counters.blocks_written = behind->blocks_written();
      counters.bytes_written = behind->bytes_written();
    }
    if (writer) {
      writer->sync();
      result.repaired_digests = writer->repaired();
    }
  } catch (Error& e) {
    if (behind) {
      behind->stop();
      e.written_digests = behind->written();
    }
    throw;
  }
  if (behind) result.written_digests = behind->written();

  result.bytes_read = counters.bytes_read;
  result.zero_blocks = counters.zero_blocks;
  result.blocks_written = counters.blocks_written;
  result.bytes_written = counters.bytes_written;
  result.progress_total = control.total();
  return result;
}

}  // namespace blocksnap
