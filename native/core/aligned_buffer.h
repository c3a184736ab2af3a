// A page-aligned, block-sized buffer. Each worker thread owns exactly one for the whole job, so
// memory is threads × block size whatever the image size. Page alignment lets the kernel copy
// whole pages and allows O_DIRECT.
//
// Buffers of 2 MiB or more are backed by transparent huge pages where the kernel allows and are
// recycled: a freed one goes to a process-wide pool (at most kMaxPooledBytes) and the next buffer
// of the same page-rounded size takes it back. Fresh memory is dear on a virtual machine that returns
// freed pages to its host (virtio-balloon free page reporting, as on Firecracker): each page is
// faulted in and zeroed again, and a copy into fresh pages ran at 1.4 GB/s here against 8.7 GB/s
// into pages already in use. A daemon that takes a snapshot every few seconds would otherwise pay
// that for every buffer of every job. The price, the pool's bytes resident, is paid only while
// the daemon is busy: a pool left untouched for kPoolIdleRelease is unmapped whole (by a thread of
// its own), so that an idle daemon shrinks back to what it holds besides.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace blocksnap {

class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 4096;
  // 16 blocks of 4 MiB: the buffers of one scan (its threads, the write-behind depth and the
  // writers' staging buffers).
  static constexpr size_t kMaxPooledBytes = size_t{64} << 20;
  // Longer than the gap between the jobs of a daemon snapshotting every few seconds, which keep
  // their buffers; short enough that an idle daemon does not hold 64 MiB it is not using.
  static constexpr std::chrono::seconds kPoolIdleRelease{5};

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

  // Bytes of freed huge buffers the process holds for reuse.
  static size_t pooled_bytes() noexcept;
  // Unmaps the pooled buffers if no buffer went into or out of the pool for `idle`; the bytes
  // unmapped. The pool's own thread calls it with kPoolIdleRelease.
  static size_t release_pool_if_idle(std::chrono::steady_clock::duration idle) noexcept;

 private:
  void release() noexcept;

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace blocksnap
