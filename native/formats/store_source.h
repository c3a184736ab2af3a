// A snapshot's content as a BlockSource: its digest array, read from the block store. Every block
// is verified against its digest before a byte of it is used (invariant 6), so whatever consumes
// this source (the qcow2 writer) never sees wrong data; ZERO blocks are known zero without a read.
//
// Immutable apart from its counters, so one source serves all writer threads at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "core/held_bytes.h"
#include "formats/block_source.h"

namespace blocksnap {

class StoreSource final : public BlockSource {
 public:
  // Throws InvalidArgument for a bad block size or a digest array of the wrong length.
  StoreSource(std::string store_dir, uint64_t block_size, uint64_t size_bytes, HeldBytes digests);

  uint64_t size() const override { return size_bytes_; }
  // Any range; blocks it overlaps are read whole. Errors carry the block index and digest.
  SourceRead read(uint64_t offset, size_t len, uint8_t* buf) const override {
    return read_knowing(offset, len, buf, nullptr);
  }
  // A non-ZERO block whose digest is the SHA-256 of `known`'s bytes there is copied from `known`,
  // not read: hashing what the caller holds costs less than reading and verifying a store block.
  SourceRead read_knowing(uint64_t offset, size_t len, uint8_t* buf, const uint8_t* known) const override;
  // The part of the range in blocks that are not ZERO: ZERO blocks are never read.
  uint64_t data_bytes(uint64_t offset, uint64_t len) const override;

  uint64_t block_size() const { return block_size_; }
  // Non-ZERO blocks read so far and their bytes (a block read twice counts twice).
  uint64_t blocks_read() const { return blocks_read_.load(std::memory_order_relaxed); }
  uint64_t bytes_read() const { return bytes_read_.load(std::memory_order_relaxed); }
  // Non-ZERO blocks read_knowing took from `known` instead.
  uint64_t blocks_known() const { return blocks_known_.load(std::memory_order_relaxed); }

 private:
  std::string store_dir_;
  uint64_t block_size_;
  uint64_t size_bytes_;
  HeldBytes digests_;
  mutable std::atomic<uint64_t> blocks_read_{0}, bytes_read_{0}, blocks_known_{0};
};

}  // namespace blocksnap
