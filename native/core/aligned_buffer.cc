#include "core/aligned_buffer.h"

#include <sys/mman.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include <vector>

namespace blocksnap {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

using Clock = std::chrono::steady_clock;

// Freed huge buffers by capacity, most recently freed last.
class HugeBufferPool {
 public:
  void* take(size_t capacity) noexcept {
    std::lock_guard lock(mutex_);
    last_use_ = Clock::now();
    for (size_t i = free_.size(); i-- > 0;) {
      if (free_[i].second != capacity) continue;
      void* p = free_[i].first;
      free_.erase(free_.begin() + static_cast<ptrdiff_t>(i));
      bytes_ -= capacity;
      return p;
    }
    return nullptr;
  }
  // Keeps the buffer, unmapping the least recently freed ones beyond the cap: the sizes the
  // next jobs want are those the last ones used (an image scan's blocks, a served disk's frames).
  bool give(void* p, size_t capacity) noexcept {
    if (capacity > AlignedBuffer::kMaxPooledBytes) return false;
    std::lock_guard lock(mutex_);
    try {
      free_.emplace_back(p, capacity);
    } catch (const std::bad_alloc&) {
      return false;
    }
    bytes_ += capacity;
    last_use_ = Clock::now();
    start_releaser();
    if (bytes_ == capacity) pooled_.notify_one();
    size_t n = 0;
    for (; bytes_ > AlignedBuffer::kMaxPooledBytes; ++n) {
      ::munmap(free_[n].first, free_[n].second);
      bytes_ -= free_[n].second;
    }
    free_.erase(free_.begin(), free_.begin() + static_cast<ptrdiff_t>(n));
    return true;
  }
  size_t bytes() noexcept {
    std::lock_guard lock(mutex_);
    return bytes_;
  }
  size_t release_if_idle(Clock::duration idle) noexcept {
    std::vector<std::pair<void*, size_t>> freed;
    {
      std::lock_guard lock(mutex_);
      if (Clock::now() - last_use_ < idle) return 0;
      freed.swap(free_);
      bytes_ = 0;
    }
    size_t bytes = 0;
    for (const auto& [p, capacity] : freed) {
      ::munmap(p, capacity);
      bytes += capacity;
    }
    return bytes;
  }

 private:
  // Under mutex_. The thread lives as long as the process (the pool is never destroyed) and
  // wakes once per idle period while the pool holds anything, never while it is empty.
  void start_releaser() noexcept {
    if (releaser_started_) return;
    try {
      std::thread([this] { release_when_idle(); }).detach();
      releaser_started_ = true;
    } catch (...) {
      // No thread: the pool keeps its bytes as it did before there was one.
    }
  }
  [[noreturn]] void release_when_idle() noexcept {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (bytes_ == 0) {
        pooled_.wait(lock, [this] { return bytes_ != 0; });
        continue;
      }
      const Clock::time_point due = last_use_ + AlignedBuffer::kPoolIdleRelease;
      if (Clock::now() < due) {
        pooled_.wait_until(lock, due);
        continue;
      }
      lock.unlock();
      release_if_idle(AlignedBuffer::kPoolIdleRelease);
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable pooled_;  // bytes_ went from 0 to more
  std::vector<std::pair<void*, size_t>> free_;
  size_t bytes_ = 0;
  Clock::time_point last_use_;
  bool releaser_started_ = false;
};

// Never destroyed: buffers may be freed by threads still running while the process exits.
HugeBufferPool& pool() {
  static auto* p = new HugeBufferPool;
  return *p;
}

// Huge buffers are mapped, not malloc'd: glibc would serve them from per-thread arenas once its
// dynamic mmap threshold rose past them, where freed ones stay resident (the daemon's RSS grew by
// a buffer or two per job that way), and it cannot put a 4 MiB + 4 KiB buffer on huge pages
// without rounding it up to 6 MiB. The mapping starts on a 2 MiB boundary; a tail shorter than a
// huge page gets ordinary pages.
void* map_huge(size_t capacity) {
  const size_t span = capacity + kHugePage;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto begin = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = (begin + kHugePage - 1) / kHugePage * kHugePage;
  if (start > begin) ::munmap(raw, start - begin);
  if (begin + span > start + capacity) ::munmap(reinterpret_cast<void*>(start + capacity), begin + span - (start + capacity));
  ::madvise(reinterpret_cast<void*>(start), capacity, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(start);
}

}  // namespace

AlignedBuffer::AlignedBuffer(size_t size) { reserve(size); }

AlignedBuffer::~AlignedBuffer() { release(); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)), capacity_(std::exchange(other.capacity_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

void AlignedBuffer::release() noexcept {
  if (data_ != nullptr) {
    if (capacity_ < kHugePage) std::free(data_);
    else if (!pool().give(data_, capacity_)) ::munmap(data_, capacity_);
  }
  data_ = nullptr;
  size_ = capacity_ = 0;
}

size_t AlignedBuffer::pooled_bytes() noexcept { return pool().bytes(); }

size_t AlignedBuffer::release_pool_if_idle(std::chrono::steady_clock::duration idle) noexcept {
  return pool().release_if_idle(idle);
}

void AlignedBuffer::reserve(size_t size) {
  if (size <= size_) return;
  if (size <= capacity_) {
    size_ = size;
    return;
  }
  // A block of 2 MiB or more is backed by huge pages where the kernel allows: physically
  // contiguous, a direct read into it reaches the disk as a few large requests (io/direct_io.h).
  const bool huge = size >= kHugePage;
  const size_t capacity = huge ? (size + kAlignment - 1) / kAlignment * kAlignment : size == 0 ? kAlignment : size;
  void* p = nullptr;
  if (huge) {
    p = pool().take(capacity);
    if (p == nullptr) p = map_huge(capacity);
  } else if (posix_memalign(&p, kAlignment, capacity) != 0) {
    throw std::bad_alloc();
  }
  release();
  data_ = static_cast<uint8_t*>(p);
  size_ = size;
  capacity_ = capacity;
}

}  // namespace blocksnap
