// The thread model of every job: N worker threads claim item indexes (blocks) from one atomic
// counter, so the order is roughly sequential on disk and no thread idles while another has a
// backlog. The calling thread only waits and reports progress. Cancellation and the first
// failure both stop the claiming; a block already claimed is finished first, so a job stops
// within one block per thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>

namespace blocksnap {

// Which pass of a job is running, for whoever decides whether to cancel it: a rollback cancelled
// while it compares leaves its image as it was, one cancelled while it writes does not. Jobs of
// a single pass leave it None.
enum class JobPhase : uint8_t { None, Comparing, Writing };

// Shared between a running job and whoever may cancel it (the JS thread).
class JobControl {
 public:
  void cancel() noexcept { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_relaxed); }

  // Units of progress (bytes or blocks, as the job defines them). The total is known only once
  // the job has opened its input, so the job sets it.
  void set_total(uint64_t n) noexcept { total_.store(n, std::memory_order_relaxed); }
  uint64_t total() const noexcept { return total_.load(std::memory_order_relaxed); }
  // For a total set as the most the job may do, once part of that turns out not to be needed:
  // done over total then never goes back, as a total that grows would make it.
  void drop_from_total(uint64_t n) noexcept { total_.fetch_sub(n, std::memory_order_relaxed); }
  void add_done(uint64_t n) noexcept { done_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t done() const noexcept { return done_.load(std::memory_order_relaxed); }
  void set_phase(JobPhase p) noexcept { phase_.store(p, std::memory_order_relaxed); }
  JobPhase phase() const noexcept { return phase_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> cancelled_{false};
  std::atomic<uint64_t> total_{0};
  std::atomic<uint64_t> done_{0};
  std::atomic<JobPhase> phase_{JobPhase::None};
};

// Called from the waiting thread, never from a worker, at least every kProgressInterval, and by a
// job as it changes phase (JobControl::phase, which a report carries).
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

inline constexpr std::chrono::milliseconds kProgressInterval{200};

// The cores this process may run on (at least 1).
unsigned core_count();

// Threads for `items` work items when the caller asked for `requested` (0 = one per core).
unsigned effective_threads(unsigned requested, uint64_t items);

class ParallelRun {
 public:
  ParallelRun(JobControl& control, uint64_t items) : control_(control), items_(items) {}

  // For workers: the next unclaimed index, or false when none is left or the job is stopping.
  bool next(uint64_t& index) noexcept;

  // Runs worker(*this) on `threads` threads and waits, calling `progress` periodically. Rethrows
  // the first exception a worker threw; throws Cancelled if cancellation left items unclaimed.
  void run(unsigned threads, const std::function<void(ParallelRun&)>& worker, const ProgressFn& progress);

 private:
  void fail(std::exception_ptr e) noexcept;

  JobControl& control_;
  const uint64_t items_;
  std::atomic<uint64_t> next_{0};
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::condition_variable finished_cv_;
  unsigned running_ = 0;
  std::exception_ptr error_;
};

}  // namespace blocksnap
