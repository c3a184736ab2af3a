#include "core/aligned_buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>
#include <utility>

namespace blocksnap {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

}  // namespace

AlignedBuffer::AlignedBuffer(size_t size) { reserve(size); }

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void AlignedBuffer::reserve(size_t size) {
  if (size <= size_) return;
  void* p = nullptr;
  // A block of 2 MiB or more is backed by huge pages where the kernel allows: physically
  // contiguous, a direct read into it reaches the disk as a few large requests (io/direct_read.h).
  const size_t align = size >= kHugePage ? kHugePage : kAlignment;
  if (posix_memalign(&p, align, size == 0 ? kAlignment : size) != 0) throw std::bad_alloc();
  if (align == kHugePage) ::madvise(p, size, MADV_HUGEPAGE);
  std::free(data_);
  data_ = static_cast<uint8_t*>(p);
  size_ = size;
}

}  // namespace blocksnap
