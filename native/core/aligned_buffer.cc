#include "core/aligned_buffer.h"

#include <cstdlib>
#include <new>
#include <utility>

namespace blocksnap {

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
  if (posix_memalign(&p, kAlignment, size == 0 ? kAlignment : size) != 0) throw std::bad_alloc();
  std::free(data_);
  data_ = static_cast<uint8_t*>(p);
  size_ = size;
}

}  // namespace blocksnap
