// Verification read-ahead: a reader going through a volume sequentially finds the base blocks
// ahead of it verified already.
//
// A first read of a base block checks it (its granules against their marks, or the whole block
// against its digest: volume/base_view.h) on the thread that serves the read, so a first
// sequential pass over a fresh export hashes in series with serving, and requests wait for
// SHA-256 that a second core could have done meanwhile. When a read starts near where the last
// one ended, the blocks of the next kAheadBytes after it are queued, and one thread verifies
// them in order (BaseView::verify). Reads of those blocks then go straight to the verified bytes
// (on the event loop's thread when cached: CowVolume::read_cached). Random reads queue nothing:
// verifying 4 MiB around each 4 KiB read would read 1,000 times what is asked.
//
// Invariant 5 is untouched: the thread only sets verified bits after a match, as a read would;
// a block it finds damaged is left unverified (the error is dropped) and the read that touches
// it checks it again and fails. The thread starts with the first queued block, takes the base
// view as it is at each block (base_now), holds no volume lock while verifying, and is stopped
// and joined by stop(), which the volume calls before closing its files.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "volume/base_view.h"

namespace blocksnap {

class VerifyAhead {
 public:
  // `base_now`: the volume's base view now, or null once the volume is closed.
  explicit VerifyAhead(std::function<std::shared_ptr<const BaseView>()> base_now) : base_now_(std::move(base_now)) {}
  ~VerifyAhead() { stop(); }
  VerifyAhead(const VerifyAhead&) = delete;
  VerifyAhead& operator=(const VerifyAhead&) = delete;

  // After a read of [offset, offset + len) through `base`: when it follows the previous read,
  // queues the blocks of the next kAheadBytes that are neither ZERO nor verified nor queued.
  void note_read(const BaseView& base, uint64_t offset, uint64_t len) noexcept;
  // Returns once nothing is queued or being verified.
  void wait_idle();
  // Drops what is queued and joins the thread; later reads queue nothing.
  void stop() noexcept;

  // How far ahead of a sequential read blocks are verified: two 4 MiB blocks. Far enough that
  // the verifying thread works while the reads of the block before are served; no further,
  // since a reader that stops early leaves that much verified for nothing.
  static constexpr uint64_t kAheadBytes = 8 * 1024 * 1024;
  // A read starting within this distance of the last one's end counts as following it:
  // clients keep several requests in flight (nbdcopy: 256 KiB each, over up to 4 connections,
  // 16 at a time on each as the NBD server reads them) and they are served slightly out of order.
  static constexpr uint64_t kNearBytes = 2 * 1024 * 1024;

 private:
  void run();

  std::function<std::shared_ptr<const BaseView>()> base_now_;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<uint64_t> queue_;   // block indexes, under mutex_
  uint64_t last_end_ = 0;        // end of the last read noted, under mutex_
  bool have_last_ = false;
  bool busy_ = false;            // a block being verified, under mutex_
  bool stopped_ = false;
  bool no_thread_ = false;       // none could be started: reads verify as before
  std::thread thread_;
};

}  // namespace blocksnap
