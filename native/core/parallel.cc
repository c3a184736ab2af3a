#include "core/parallel.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "core/error.h"

namespace blocksnap {

unsigned core_count() { return std::max(1u, std::thread::hardware_concurrency()); }

unsigned effective_threads(unsigned requested, uint64_t items) {
  unsigned n = requested != 0 ? requested : core_count();
  return static_cast<unsigned>(std::min<uint64_t>(n, items));
}

bool ParallelRun::next(uint64_t& index) noexcept {
  if (failed_.load(std::memory_order_relaxed) || control_.cancelled()) return false;
  uint64_t i = next_.fetch_add(1, std::memory_order_relaxed);
  if (i >= items_) return false;
  index = i;
  return true;
}

void ParallelRun::fail(std::exception_ptr e) noexcept {
  std::lock_guard lock(mutex_);
  if (!error_) error_ = e;
  failed_.store(true, std::memory_order_relaxed);
}

void ParallelRun::run(unsigned threads, const std::function<void(ParallelRun&)>& worker,
                      const ProgressFn& progress) {
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned t = 0; t < threads; ++t) {
    {
      std::lock_guard lock(mutex_);
      ++running_;
    }
    try {
      pool.emplace_back([this, &worker] {
        try {
          worker(*this);
        } catch (...) {
          fail(std::current_exception());
        }
        std::lock_guard lock(mutex_);
        if (--running_ == 0) finished_cv_.notify_all();
      });
    } catch (...) {
      // Could not start a thread (EAGAIN): stop the ones already running and report it.
      fail(std::current_exception());
      std::lock_guard lock(mutex_);
      --running_;
      break;
    }
  }

  {
    std::unique_lock lock(mutex_);
    while (running_ > 0) {
      if (finished_cv_.wait_for(lock, kProgressInterval, [this] { return running_ == 0; })) break;
      if (progress) {
        lock.unlock();
        progress(control_.done(), control_.total());
        lock.lock();
      }
    }
  }
  for (std::thread& t : pool) t.join();

  if (error_) std::rethrow_exception(error_);
  if (control_.cancelled() && next_.load() < items_) throw Error(ErrorCode::Cancelled, "the job was cancelled");
}

}  // namespace blocksnap
