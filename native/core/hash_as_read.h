// Hashing a block piece by piece while a read fills its buffer (BlockSource::read_in_pieces),
// each piece right after its read, while the CPU's cache still holds it. Hashing a cached 4 MiB
// block after reading it whole reads every byte back from memory: the block is larger than the
// cache, so its start has been evicted by the time the hash gets there. The bytes hashed are
// still the buffer's own, so the buffer handed to the store is exactly what was hashed.
//
// Zero detection rides along: while everything so far is zero, a piece is only checked, not
// hashed; the first piece holding data is hashed together with the zeros before it. So an
// all-zero block is never hashed, and a block with data costs one zero check that stops at its
// first non-zero byte, as before.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/digest.h"

namespace blocksnap {

class HashAsRead {
 public:
  // `buf` is the buffer the read fills. With `mark_piece` (not 0), the marks of sha256_marked
  // by that piece size are kept too.
  HashAsRead(const uint8_t* buf, size_t mark_piece);

  // buf[0, n) now holds its final content; n never decreases.
  void filled(size_t n);
  // Whether buf[0, n) of the last filled(n) is all zero.
  bool all_zero() const noexcept { return zero_so_far_; }
  // The digest of buf[0, n) of the last filled(n), and its marks when a mark piece was given.
  Digest finish(std::vector<Digest>& marks);

 private:
  void hash_up_to(size_t n);

  const uint8_t* buf_;
  size_t filled_ = 0;
  size_t hashed_ = 0;
  bool zero_so_far_ = true;
  std::optional<Sha256> plain_;
  std::optional<MarkedSha256> marked_;
};

}  // namespace blocksnap
