// A page-aligned, block-sized buffer. Each worker thread owns exactly one for the whole job, so
// memory is threads × block size whatever the image size. Page alignment keeps the door open for
// O_DIRECT and lets the kernel copy whole pages.
#pragma once

#include <cstddef>
#include <cstdint>

namespace blocksnap {

class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 4096;

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t size);  // throws std::bad_alloc
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  // Grows (discarding contents) when `size` exceeds the capacity; never shrinks.
  void reserve(size_t size);

  uint8_t* data() noexcept { return data_; }
  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace blocksnap
