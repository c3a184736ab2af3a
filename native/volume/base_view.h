// The bottom of a copy-on-write volume: a snapshot's content, block by block from the store.
//
// Verify once, then read in place: the first time a block index is touched, the whole block is
// read and its SHA-256 checked (core/block_reader.h); the view then remembers "block i verified"
// and serves later partial reads with one pread at 64 + x of the block file. Block files are
// immutable and uncompressed in format v1 (a compressed header fails verification, so such a
// block is never read in place). The trade: damage to a block file after its verification goes
// unnoticed until the volume is reopened, against a 4 KiB read costing 4 MiB of reading and
// hashing every time. A small cache of verified payloads (BlockFileCache) means the read or
// copy-up that triggered a verification does not read the block a second time.
//
// Granules: where the store has a valid granule file for a block (core/granule_file.h: the marks
// of the block's SHA-256 after each 64 KiB, written by the snapshot scan that stored the block or
// by an earlier whole-block verification), a first touch reads and hashes only the granules it
// covers and checks each against its marks; a mismatch is DigestMismatch as for a whole block.
// Verified granules are remembered like verified blocks (a block whose granules are all verified
// counts as verified). Without a valid file the whole block is verified as above and, when the
// cache records granules, that same hash yields the marks and the file is written, so the next
// volume over the same block pays 64 KiB.
//
// State: the digests (immutable), the verified bits per block and per granule (atomics, only
// ever set), a striped lock so that concurrent readers of one unverified block verify it (or load
// its granule digests) once, and the shared cache.
// A rebase makes a new view; the cache outlives it because it is keyed by digest.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/digest.h"
#include "core/granule_file.h"
#include "io/unique_fd.h"
#include "volume/digest_lru.h"
#include "volume/zeroed_memory.h"

namespace blocksnap {

// Open block files, verified payloads and granule digests, by digest, least recently used first
// out; and the count of bytes read from block files.
class BlockFileCache {
 public:
  // `granule_dir` empty: no granule files are read or written. `record_granules`: write the
  // granule file of every block this cache's views verify whole.
  explicit BlockFileCache(std::string store_dir, std::string granule_dir = {}, bool record_granules = false)
      : store_dir_(std::move(store_dir)), granule_dir_(std::move(granule_dir)), record_granules_(record_granules) {
    register_cache();
  }
  const std::string& store_dir() const noexcept { return store_dir_; }
  bool uses_granules() const noexcept { return !granule_dir_.empty(); }

  // The granule digests of block `d` of `raw_length` bytes, from memory or from a valid granule
  // file; null when there is none (or no granule dir).
  std::shared_ptr<const GranuleDigests> granules(const Digest& d, uint64_t raw_length);
  bool records_granules() const noexcept { return !granule_dir_.empty() && record_granules_; }
  // After a whole-block verification that yielded `marks`: keeps them and writes their file,
  // when this cache records granules.
  void record_granules(const Digest& d, uint64_t raw_length, std::vector<Digest> marks);

  void count_read(uint64_t bytes) noexcept { bytes_read_.fetch_add(bytes, std::memory_order_relaxed); }
  uint64_t bytes_read() const noexcept { return bytes_read_.load(std::memory_order_relaxed); }

  std::shared_ptr<const AlignedBuffer> payload(const Digest& d);
  void put_payload(const Digest& d, std::shared_ptr<const AlignedBuffer> payload);
  struct OpenBlock {
    UniqueFd fd;
    std::string path;
  };
  // The open block file (read-only, never through a symlink). Throws BlockMissing / IOError.
  std::shared_ptr<const OpenBlock> file(const Digest& d);
  // file() for a thread that must not wait for a disk: kept open, or opened only if its path
  // resolves from the kernel's caches (io/file_io.h open_cached); null otherwise, whatever the
  // reason (the waiting file() reports errors).
  std::shared_ptr<const OpenBlock> cached_file(const Digest& d) noexcept;
  // Closes the kept file of `d`, found damaged: the next file() opens the name again, which a
  // snapshot may have repaired meanwhile (a fresh file renamed over it, core/block_writer.h).
  void forget_file(const Digest& d) noexcept;
  // Closes the kept files and drops the kept payloads and granule digests, at once rather than
  // when the last view lets the cache go: the volume closing it may stay unreleased for long (a
  // wrapper not yet collected), and a closed block file kept open holds its fd, the process's
  // budget of kept files and, once deleted, its disk space. From then on the cache keeps
  // nothing, so a reader that outlives the volume (a VolumeSource) holds a file only while it
  // reads. A file a reader is using stays open until that reader lets it go.
  void close() noexcept;

  static constexpr size_t kMaxPayloads = 4;
  // Open block files: up to kMaxFiles per volume (4 GiB of 4 MiB blocks served without an open
  // per read), and all volumes together at most kept_files_budget(): past it, the cache keeping
  // the most files closes its least recently used one, whichever volume's open made the excess,
  // so that volumes left idle give up their files to those reading and N exports share the
  // budget evenly. A volume may keep none: a file is needed only while a read uses it (the read
  // holds it, not the cache), and the budget is what leaves the daemon's sockets, images and
  // store writers their descriptors.
  static constexpr size_t kMaxFiles = 1024;
  static constexpr size_t kMaxGranuleSets = 64;
  // How many open block files all volumes of the process keep together: a quarter of the soft
  // RLIMIT_NOFILE, read at each open (the limit an operator raised with prlimit counts at once).
  static size_t kept_files_budget() noexcept;
  // How many open block files all caches of the process keep now.
  static size_t kept_files() noexcept;
  // In every cache of the process, closes the kept block files and drops the payloads and granule
  // digests that no read has used for `idle` or longer; returns how many files it closed. An
  // export nobody reads would otherwise hold its files (and up to kMaxPayloads blocks of memory)
  // for as long as it is served. A read holds the file it uses, not the cache, so a file closed
  // here stays open until a read under way lets it go, and the next read opens it again.
  static size_t close_idle(std::chrono::steady_clock::duration idle);

  ~BlockFileCache();
  BlockFileCache(const BlockFileCache&) = delete;
  BlockFileCache& operator=(const BlockFileCache&) = delete;

 private:
  std::shared_ptr<const OpenBlock> kept_file(const Digest& d);
  std::shared_ptr<const OpenBlock> keep_file(const Digest& d, UniqueFd fd, std::string path);
  void register_cache();
  // Closes kept files, one at a time from the cache keeping the most, until all caches together
  // keep no more than kept_files_budget(). Called holding no cache's lock.
  static void trim_to_budget() noexcept;

  std::string store_dir_;
  std::string granule_dir_;
  bool record_granules_;
  std::atomic<uint64_t> bytes_read_{0};
  std::mutex mutex_;
  bool closed_ = false;  // under mutex_
  DigestLru<std::shared_ptr<const AlignedBuffer>> payloads_;
  DigestLru<std::shared_ptr<const OpenBlock>> files_;
  // files_.size(), for trim_to_budget() to compare caches without taking each one's lock.
  std::atomic<size_t> kept_count_{0};
  DigestLru<std::shared_ptr<const GranuleDigests>> granules_;
};

class BaseView {
 public:
  // `digests`: ceil(size / block_size) × 32, ZERO as 32 zero bytes, copied (only the blocks that
  // are not ZERO: the copy costs memory for those alone). `previous` (may be null) passes on what
  // it verified for block indexes whose digest did not change.
  BaseView(std::shared_ptr<BlockFileCache> cache, uint64_t block_size, uint64_t size, std::span<const uint8_t> digests,
           const BaseView* previous);

  uint64_t block_size() const noexcept { return block_size_; }
  uint64_t block_count() const noexcept { return block_count_; }
  Digest digest(uint64_t i) const;
  bool zero_block(uint64_t i) const noexcept;
  // True when [offset, offset + len) lies in ZERO blocks only.
  bool all_zero(uint64_t offset, uint64_t len) const noexcept;
  // Block i wholly verified in this view (or carried over from the previous one).
  bool block_verified(uint64_t i) const noexcept { return verified(i); }
  // Whether first touches check granules (a granule dir, blocks of more than one granule).
  bool uses_granules() const noexcept { return granule_words_ != 0; }

  // Fills out[0, len) with the base content at `offset`. Returns the bytes read from the store.
  // Throws BlockMissing / BlockCorrupt / DigestMismatch (with the block index) / IOError.
  uint64_t read(uint64_t offset, size_t len, uint8_t* out) const;
  // read() for a thread that must not wait for a disk: true when it filled out[0, len) from
  // memory and the page cache (io/file_io.h read_cached_at), from blocks or granules verified
  // already; false when it would wait, verify or fail, leaving the read to read().
  bool read_cached(uint64_t offset, size_t len, uint8_t* out) const noexcept;
  // Asks the kernel to start reading block i's file into the page cache (POSIX_FADV_WILLNEED,
  // which returns once the reads are queued). A hint only: errors are left to the read.
  void prefetch(uint64_t i) const noexcept;
  // Reads block i's file whole into `frame` with one O_DIRECT read, header and payload in place
  // (the payload at frame + 64, as a block file holds it), when less than half of the file is in
  // the page cache and direct reads can be had (io/direct_io.h); verifies the payload unless the
  // block was verified before. `frame` is a frame for the block (core/block_format.h). False
  // when it did nothing (a ZERO block, mostly cached, no direct reads): the block is then read
  // through the cache as before. A cold block read through the cache costs a page-cache fill and
  // a copy in fresh pages, which a virtual machine pays for twice (core/aligned_buffer.h), and
  // reaches the disk as requests of ~1 MiB. Throws like read().
  bool read_whole_direct(uint64_t i, uint8_t* frame) const;
  // Verifies what of block i is not verified yet without serving it: the granules left, one by
  // one, where a granule file is had (each checked against its mark, as a first touch would), or
  // else the whole block, kept like a read's. For verification read-ahead (volume/verify_ahead.h):
  // the read that follows finds the block verified. Throws like read().
  void verify(uint64_t i) const;

 private:
  uint64_t read_in_block(uint64_t i, uint64_t x, size_t len, uint8_t* out) const;
  // Copies payload bytes [x, x + len) of block `d` from the payloads kept in memory, if there.
  bool copy_kept_payload(const Digest& d, uint64_t x, size_t len, uint8_t* out) const;
  // Fills out[0, len) from block i at x, verifying each granule not verified yet against `g`.
  uint64_t read_granules(uint64_t i, const Digest& d, const GranuleDigests& g, uint64_t x, size_t len, uint8_t* out) const;
  uint64_t block_length(uint64_t i) const noexcept { return std::min(block_size_, size_ - i * block_size_); }
  bool verified(uint64_t i) const noexcept {
    return (verified_[i / 64].load(std::memory_order_acquire) >> (i % 64)) & 1;
  }
  void set_verified(uint64_t i) const noexcept { verified_[i / 64].fetch_or(uint64_t{1} << (i % 64), std::memory_order_acq_rel); }
  bool granule_verified(uint64_t i, uint64_t k) const noexcept {
    return (granule_bits_[i * granule_words_ + k / 64].load(std::memory_order_acquire) >> (k % 64)) & 1;
  }
  // True when every granule of block i that [x, x + len) touches is verified.
  bool granules_verified(uint64_t i, uint64_t x, size_t len) const noexcept;
  // Sets granule k of block i; when that completes the block, sets the block's bit too.
  void set_granule_verified(uint64_t i, uint64_t k) const noexcept;

  std::shared_ptr<BlockFileCache> cache_;
  uint64_t block_size_;
  uint64_t size_;
  uint64_t block_count_;
  // By block, in memory that costs only the pages written (volume/zeroed_memory.h): for a sparse
  // disk of many TiB, most digests are ZERO and most blocks are never verified.
  ZeroedPages digests_;
  ZeroedWords verified_;
  uint64_t granule_words_;  // per block; 0 when granules are not used
  ZeroedWords granule_bits_;
  mutable std::array<std::mutex, 16> verify_locks_;
};

}  // namespace blocksnap
