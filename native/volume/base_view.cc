#include "volume/base_view.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/block_format.h"
#include "core/block_reader.h"
#include "core/error.h"
#include "core/store_layout.h"
#include "io/file_io.h"

namespace blocksnap {

namespace {

// Moves a hit to the back (most recent) and returns it; null when absent.
template <typename Vec>
auto* touch(Vec& entries, const Digest& d) {
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].digest != d) continue;
    if (i + 1 < entries.size()) std::rotate(entries.begin() + static_cast<ptrdiff_t>(i), entries.begin() + static_cast<ptrdiff_t>(i) + 1, entries.end());
    return &entries.back();
  }
  return static_cast<decltype(&entries.back())>(nullptr);
}

template <typename Vec, typename T>
void insert(Vec& entries, const Digest& d, T value, size_t max) {
  if (auto* hit = touch(entries, d)) {
    hit->value = std::move(value);
    return;
  }
  if (entries.size() >= max) entries.erase(entries.begin());
  entries.push_back({d, std::move(value)});
}

}  // namespace

std::shared_ptr<const AlignedBuffer> BlockFileCache::payload(const Digest& d) {
  std::lock_guard lock(mutex_);
  auto* hit = touch(payloads_, d);
  return hit ? hit->value : nullptr;
}

void BlockFileCache::put_payload(const Digest& d, std::shared_ptr<const AlignedBuffer> payload) {
  std::lock_guard lock(mutex_);
  insert(payloads_, d, std::move(payload), kMaxPayloads);
}

std::shared_ptr<const BlockFileCache::OpenBlock> BlockFileCache::file(const Digest& d) {
  {
    std::lock_guard lock(mutex_);
    if (auto* hit = touch(files_, d)) return hit->value;
  }
  auto block = std::make_shared<OpenBlock>();
  block->path = block_file_path(store_dir_, d);
  block->fd.reset(open_retry(block->path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!block->fd) {
    Error e = errno == ENOENT ? Error(ErrorCode::BlockMissing, "block " + to_hex(d) + " is missing from the store")
                              : Error::system(errno, "open", block->path);
    e.path = block->path;
    throw std::move(e).with_digest(d);
  }
  std::lock_guard lock(mutex_);
  insert(files_, d, block, kMaxFiles);
  return block;
}

BaseView::BaseView(std::shared_ptr<BlockFileCache> cache, uint64_t block_size, uint64_t size, std::vector<uint8_t> digests,
                   const BaseView* previous)
    : cache_(std::move(cache)),
      block_size_(block_size),
      size_(size),
      block_count_((size + block_size - 1) / block_size),
      digests_(std::move(digests)),
      verified_((block_count_ + 63) / 64) {
  if (digests_.size() != block_count_ * kDigestSize)
    throw Error(ErrorCode::InvalidArgument, "base digests must be ceil(size / block size) × 32 bytes");
  if (previous == nullptr || previous->block_size_ != block_size_) return;
  const uint64_t common = std::min(block_count_, previous->block_count_);
  for (uint64_t i = 0; i < common; ++i) {
    if (previous->verified(i) && std::memcmp(&digests_[i * kDigestSize], &previous->digests_[i * kDigestSize], kDigestSize) == 0)
      verified_[i / 64].fetch_or(uint64_t{1} << (i % 64), std::memory_order_relaxed);
  }
}

Digest BaseView::digest(uint64_t i) const {
  Digest d;
  std::memcpy(d.data(), &digests_[i * kDigestSize], kDigestSize);
  return d;
}

bool BaseView::zero_block(uint64_t i) const noexcept {
  const uint8_t* p = &digests_[i * kDigestSize];
  for (size_t k = 0; k < kDigestSize; ++k)
    if (p[k] != 0) return false;
  return true;
}

bool BaseView::all_zero(uint64_t offset, uint64_t len) const noexcept {
  if (len == 0) return true;
  for (uint64_t i = offset / block_size_, last = (offset + len - 1) / block_size_; i <= last; ++i)
    if (!zero_block(i)) return false;
  return true;
}

uint64_t BaseView::read(uint64_t offset, size_t len, uint8_t* out) const {
  uint64_t bytes_read = 0;
  const uint64_t end = offset + len;
  for (uint64_t pos = offset; pos < end;) {
    const uint64_t i = pos / block_size_;
    const uint64_t x = pos - i * block_size_;
    const size_t n = static_cast<size_t>(std::min(end, (i + 1) * block_size_) - pos);
    try {
      bytes_read += read_in_block(i, x, n, out + (pos - offset));
    } catch (Error& e) {
      if (!e.block_index) e.block_index = i;
      throw;
    }
    pos += n;
  }
  return bytes_read;
}

uint64_t BaseView::read_in_block(uint64_t i, uint64_t x, size_t len, uint8_t* out) const {
  if (zero_block(i)) {
    std::memset(out, 0, len);
    return 0;
  }
  const Digest d = digest(i);
  const auto from_cache = [&] {
    auto payload = cache_->payload(d);
    if (payload) std::memcpy(out, payload->data() + x, len);
    return payload != nullptr;
  };
  if (from_cache()) return 0;
  if (!verified(i)) {
    // One verification per block even when several readers arrive at once (a 4 MiB block read
    // as four 1 MiB requests): the others wait and then find the payload in the cache.
    std::lock_guard lock(verify_locks_[i % verify_locks_.size()]);
    if (from_cache()) return 0;
    if (!verified(i)) {
      auto payload = std::make_shared<AlignedBuffer>();
      const uint64_t block_len = std::min(block_size_, size_ - i * block_size_);
      BlockReadOptions options;
      options.expected_length = block_len;
      read_block(cache_->store_dir(), d, *payload, options);
      verified_[i / 64].fetch_or(uint64_t{1} << (i % 64), std::memory_order_acq_rel);
      std::memcpy(out, payload->data() + x, len);
      cache_->put_payload(d, std::move(payload));
      return block_len;
    }
  }
  auto block = cache_->file(d);
  if (read_at(block->fd.get(), out, len, kBlockHeaderSize + x, block->path) != len) {
    Error e(ErrorCode::BlockCorrupt, "block " + to_hex(d) + " is corrupt: shorter than when it was verified");
    e.path = block->path;
    throw std::move(e).with_digest(d);
  }
  return len;
}

}  // namespace blocksnap
