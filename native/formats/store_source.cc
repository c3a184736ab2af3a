#include "formats/store_source.h"

#include <algorithm>
#include <cstring>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/block_reader.h"
#include "core/digest.h"
#include "core/error.h"

namespace blocksnap {

StoreSource::StoreSource(std::string store_dir, uint64_t block_size, uint64_t size_bytes, HeldBytes digests)
    : store_dir_(std::move(store_dir)), block_size_(block_size), size_bytes_(size_bytes), digests_(std::move(digests)) {
  if (!is_valid_block_size(block_size_)) throw Error(ErrorCode::InvalidArgument, "invalid block size");
  const uint64_t blocks = size_bytes_ / block_size_ + (size_bytes_ % block_size_ != 0);
  if (digests_.size() != blocks * kDigestSize)
    throw Error(ErrorCode::InvalidArgument, "digests must hold ceil(sizeBytes / blockSize) × 32 bytes");
}

uint64_t StoreSource::data_bytes(uint64_t offset, uint64_t len) const {
  if (offset >= size_bytes_) return 0;
  const uint64_t end = offset + std::min(len, size_bytes_ - offset);
  uint64_t total = 0;
  for (uint64_t i = offset / block_size_; i * block_size_ < end; ++i) {
    const uint8_t* d = digests_.data() + i * kDigestSize;
    if (std::all_of(d, d + kDigestSize, [](uint8_t b) { return b == 0; })) continue;
    total += std::min(end, (i + 1) * block_size_) - std::max(offset, i * block_size_);
  }
  return total;
}

SourceRead StoreSource::read_knowing(uint64_t offset, size_t len, uint8_t* buf, const uint8_t* known) const {
  if (offset > size_bytes_ || len > size_bytes_ - offset)
    throw Error(ErrorCode::InvalidArgument, "read past the end of the snapshot");
  const uint64_t end = offset + len;
  const uint64_t first = offset / block_size_;
  const uint64_t last = end == offset ? first : (end - 1) / block_size_ + 1;
  auto digest_of = [&](uint64_t i) {
    Digest d;
    std::memcpy(d.data(), digests_.data() + i * kDigestSize, kDigestSize);
    return d;
  };
  bool all_zero = true;
  for (uint64_t i = first; i < last && all_zero; ++i) all_zero = is_zero_digest(digest_of(i));
  if (all_zero) return {0, true};

  // One block-sized buffer per writer thread for the whole job, as elsewhere (aligned_buffer.h).
  thread_local AlignedBuffer block;
  SourceRead r;
  for (uint64_t i = first; i < last; ++i) {
    const uint64_t block_begin = i * block_size_;
    const uint64_t b = std::max(block_begin, offset), f = std::min(block_begin + block_size_, end);
    const Digest d = digest_of(i);
    if (is_zero_digest(d)) {
      std::memset(buf + (b - offset), 0, f - b);
      continue;
    }
    const uint64_t block_len = std::min(block_size_, size_bytes_ - block_begin);
    // A digest covers a whole block: only a block the range holds whole can be recognised.
    if (known != nullptr && b == block_begin && f == block_begin + block_len &&
        sha256(known + (b - offset), static_cast<size_t>(block_len)) == d) {
      std::memcpy(buf + (b - offset), known + (b - offset), block_len);
      blocks_known_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    try {
      BlockReadOptions o;
      o.expected_length = block_len;
      read_block(store_dir_, d, block, o);
    } catch (Error& e) {
      if (!e.block_index) e.block_index = i;
      if (!e.digest) e.digest = d;
      throw;
    }
    std::memcpy(buf + (b - offset), block.data() + (b - block_begin), f - b);
    r.bytes_read += block_len;
    blocks_read_.fetch_add(1, std::memory_order_relaxed);
    bytes_read_.fetch_add(block_len, std::memory_order_relaxed);
  }
  return r;
}

}  // namespace blocksnap
