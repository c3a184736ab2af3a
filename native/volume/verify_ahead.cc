#include "volume/verify_ahead.h"

#include <algorithm>
#include <system_error>

namespace blocksnap {

void VerifyAhead::note_read(const BaseView& base, uint64_t offset, uint64_t len) noexcept {
  if (len == 0) return;
  try {
    const uint64_t end = offset + len;
    const uint64_t bs = base.block_size();
    bool queued = false;
    {
      std::lock_guard lock(mutex_);
      const bool follows = have_last_ && offset + kNearBytes >= last_end_ && offset <= last_end_ + kNearBytes;
      have_last_ = true;
      last_end_ = std::max(end, follows ? last_end_ : 0);
      if (!follows || stopped_ || no_thread_) return;
      const uint64_t first = (end - 1) / bs + 1;
      const uint64_t last = std::min(base.block_count(), (end + kAheadBytes + bs - 1) / bs);
      for (uint64_t i = first; i < last; ++i) {
        if (base.zero_block(i) || base.block_verified(i)) continue;
        if (std::find(queue_.begin(), queue_.end(), i) != queue_.end()) continue;
        queue_.push_back(i);
        queued = true;
      }
      if (queued && !thread_.joinable()) {
        try {
          thread_ = std::thread([this] { run(); });
        } catch (const std::system_error&) {
          no_thread_ = true;
          queue_.clear();
          return;
        }
      }
    }
    if (queued) work_cv_.notify_one();
  } catch (...) {
    // A hint only: the read verifies what it needs.
  }
}

void VerifyAhead::run() {
  for (;;) {
    uint64_t i;
    {
      std::unique_lock lock(mutex_);
      busy_ = false;
      if (queue_.empty()) idle_cv_.notify_all();
      work_cv_.wait(lock, [this] { return stopped_ || !queue_.empty(); });
      if (stopped_) return;
      i = queue_.front();
      queue_.pop_front();
      busy_ = true;
    }
    try {
      if (const auto base = base_now_()) base->verify(i);
    } catch (...) {
      // A damaged or missing block stays unverified: the read that touches it meets the error.
    }
  }
}

void VerifyAhead::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_cv_.wait(lock, [this] { return stopped_ || (queue_.empty() && !busy_); });
}

void VerifyAhead::stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    queue_.clear();
  }
  work_cv_.notify_all();
  idle_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace blocksnap
