// Memory that reads as zeros and costs only the pages written: anonymous memory, whose pages the
// kernel allocates at their first write. For the per-block and per-granule state of a volume,
// which is sized by the disk and mostly zero: a layer's bitmap (32 MiB per TiB of disk, mostly
// clear: a fresh layer is all clear, and a guest writes a fraction of its disk between two
// snapshots) and a base view's digests (8 MiB per TiB, ZERO for every block a sparse disk never
// wrote). Held this way they cost the pages that hold something, where zero-filled vectors cost
// their whole size in RAM and the time to fill it: a 15 TiB disk's bitmap is 480 MiB per layer,
// seconds to fault in on a VM that takes fresh pages from its host.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace blocksnap {

class ZeroedPages {
 public:
  ZeroedPages() = default;
  explicit ZeroedPages(size_t bytes) : bytes_(bytes) {
    if (bytes == 0) return;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    // Ordinary pages: a huge page would make one written word cost 2 MiB.
    ::madvise(p, bytes, MADV_NOHUGEPAGE);
    data_ = static_cast<uint8_t*>(p);
  }
  ~ZeroedPages() {
    if (data_ != nullptr) ::munmap(data_, bytes_);
  }
  ZeroedPages(ZeroedPages&& o) noexcept : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  ZeroedPages& operator=(ZeroedPages&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ZeroedPages(const ZeroedPages&) = delete;
  ZeroedPages& operator=(const ZeroedPages&) = delete;

  // Page-aligned.
  uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return bytes_; }

 private:
  uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
};

// 64-bit words in ZeroedPages, accessed atomically (the mapping is page-aligned, so every word is).
class ZeroedWords {
 public:
  ZeroedWords() = default;
  explicit ZeroedWords(size_t count) : pages_(count * sizeof(uint64_t)) {}

  size_t size() const noexcept { return pages_.size() / sizeof(uint64_t); }
  bool empty() const noexcept { return size() == 0; }
  std::atomic_ref<uint64_t> operator[](size_t i) const noexcept {
    return std::atomic_ref<uint64_t>(reinterpret_cast<uint64_t*>(pages_.data())[i]);
  }
  std::atomic_ref<uint64_t> back() const noexcept { return (*this)[size() - 1]; }

 private:
  ZeroedPages pages_;
};

}  // namespace blocksnap
