#include "core/write_behind.h"

#include <new>

#include "core/block_format.h"
#include "core/error.h"
#include "core/granule_file.h"

namespace blocksnap {

WriteBehind::WriteBehind(BlockWriter& writer, size_t block_size, unsigned writers, unsigned depth, std::string granule_dir,
                         bool framed)
    : writer_(writer),
      granule_dir_(std::move(granule_dir)),
      wants_marks_(!granule_dir_.empty() && block_size > kGranuleSize),
      framed_(framed) {
  free_.reserve(depth);
  for (unsigned i = 0; i < depth; ++i) free_.emplace_back(framed ? block_frame_size(block_size) : block_size);
  threads_.reserve(writers);
  try {
    for (unsigned i = 0; i < writers; ++i) threads_.emplace_back([this] { writer_loop(); });
  } catch (...) {
    // Could not start a thread (EAGAIN): the ones running must be joined before unwinding.
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
    throw;
  }
}

WriteBehind::~WriteBehind() { stop(); }

void WriteBehind::stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
    queue_.clear();
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
}

std::vector<uint8_t> WriteBehind::written() const {
  std::lock_guard lock(mutex_);
  return written_;
}

void WriteBehind::rethrow_failure_locked() {
  if (failure_) std::rethrow_exception(failure_);
}

AlignedBuffer WriteBehind::submit(AlignedBuffer buf, const Digest& digest, size_t len, uint64_t block_index,
                                  std::vector<Digest> marks) {
  std::unique_lock lock(mutex_);
  rethrow_failure_locked();
  queue_.push_back(Item{std::move(buf), digest, len, block_index, std::move(marks)});
  work_cv_.notify_one();
  free_cv_.wait(lock, [this] { return !free_.empty() || failure_; });
  rethrow_failure_locked();
  AlignedBuffer out = std::move(free_.back());
  free_.pop_back();
  return out;
}

void WriteBehind::drain() {
  std::unique_lock lock(mutex_);
  free_cv_.wait(lock, [this] { return (queue_.empty() && busy_ == 0) || failure_; });
  rethrow_failure_locked();
}

void WriteBehind::writer_loop() {
  for (;;) {
    Item item;
    {
      std::unique_lock lock(mutex_);
      work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_ || failure_) return;
      item = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
    }
    bool written = false;
    std::exception_ptr failed;
    try {
      written = framed_ ? writer_.put_framed(item.digest, item.buf.data(), item.len)
                        : writer_.put(item.digest, item.buf.data(), item.len);
      if (written && !item.marks.empty())
        store_granule_file(granule_dir_, GranuleDigests{item.digest, item.len, std::move(item.marks)});
    } catch (Error& e) {
      if (!e.block_index) e.block_index = item.block_index;
      failed = std::current_exception();
    } catch (...) {
      failed = std::current_exception();
    }
    {
      std::lock_guard lock(mutex_);
      --busy_;
      if (written) {
        ++blocks_written_;
        bytes_written_ += item.len;
        // Out of memory, the block stays unlisted and only gc removes it: better than terminating.
        try {
          written_.insert(written_.end(), item.digest.begin(), item.digest.end());
        } catch (const std::bad_alloc&) {
        }
      }
      if (failed && !failure_) failure_ = failed;
      free_.push_back(std::move(item.buf));
    }
    free_cv_.notify_all();
  }
}

}  // namespace blocksnap
