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
// State: the digests (immutable), the verified bits (atomics, only ever set), a striped lock so
// that concurrent readers of one unverified block verify it once, and the shared cache.
// A rebase makes a new view; the cache outlives it because it is keyed by digest.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/digest.h"
#include "io/unique_fd.h"

namespace blocksnap {

// Open block files and verified payloads, by digest, least recently used first out.
class BlockFileCache {
 public:
  explicit BlockFileCache(std::string store_dir) : store_dir_(std::move(store_dir)) {}
  const std::string& store_dir() const noexcept { return store_dir_; }

  std::shared_ptr<const AlignedBuffer> payload(const Digest& d);
  void put_payload(const Digest& d, std::shared_ptr<const AlignedBuffer> payload);
  struct OpenBlock {
    UniqueFd fd;
    std::string path;
  };
  // The open block file (read-only, never through a symlink). Throws BlockMissing / IOError.
  std::shared_ptr<const OpenBlock> file(const Digest& d);

  static constexpr size_t kMaxPayloads = 4;
  static constexpr size_t kMaxFiles = 64;

 private:
  template <typename T>
  struct Entry {
    Digest digest;
    T value;
  };
  std::string store_dir_;
  std::mutex mutex_;
  std::vector<Entry<std::shared_ptr<const AlignedBuffer>>> payloads_;  // most recent last
  std::vector<Entry<std::shared_ptr<const OpenBlock>>> files_;         // most recent last
};

class BaseView {
 public:
  // `digests`: ceil(size / block_size) × 32, ZERO as 32 zero bytes. `previous` (may be null)
  // passes on what it verified for block indexes whose digest did not change.
  BaseView(std::shared_ptr<BlockFileCache> cache, uint64_t block_size, uint64_t size, std::vector<uint8_t> digests,
           const BaseView* previous);

  uint64_t block_size() const noexcept { return block_size_; }
  uint64_t block_count() const noexcept { return block_count_; }
  const std::vector<uint8_t>& digests() const noexcept { return digests_; }
  Digest digest(uint64_t i) const;
  bool zero_block(uint64_t i) const noexcept;
  // True when [offset, offset + len) lies in ZERO blocks only.
  bool all_zero(uint64_t offset, uint64_t len) const noexcept;

  // Fills out[0, len) with the base content at `offset`. Returns the bytes read from the store.
  // Throws BlockMissing / BlockCorrupt / DigestMismatch (with the block index) / IOError.
  uint64_t read(uint64_t offset, size_t len, uint8_t* out) const;

 private:
  uint64_t read_in_block(uint64_t i, uint64_t x, size_t len, uint8_t* out) const;
  bool verified(uint64_t i) const noexcept {
    return (verified_[i / 64].load(std::memory_order_acquire) >> (i % 64)) & 1;
  }

  std::shared_ptr<BlockFileCache> cache_;
  uint64_t block_size_;
  uint64_t size_;
  uint64_t block_count_;
  std::vector<uint8_t> digests_;
  mutable std::vector<std::atomic<uint64_t>> verified_;
  mutable std::array<std::mutex, 16> verify_locks_;
};

}  // namespace blocksnap
