// A copy-on-write disk: a writable top layer over frozen layers over a snapshot's blocks
// (docs/design.md, "Copy-on-write disks"; files in volume/cow_format.h).
//
// State: the layer stack (bottom → top) and the base view, swapped only by push_layer and rebase
// under the stack lock held exclusively; every I/O holds it shared, so I/O never sees a half-made
// stack and a swap waits for the I/O in flight. A rebase makes its new view (proportional to the
// disk's size) before it takes the lock exclusively; a new top's map costs what its file holds,
// nothing for a fresh layer (volume/cow_map.h). Jobs reading a frozen prefix (scan, flatten) take
// shared pointers to the layers they need and drop the lock, so the top keeps taking writes.
//
// Writes: a granule (4 KiB; 64 KiB in a layer made before map version 2) whose bit is clear in
// the top and which a write covers only in part is copied up whole (the content below merged
// with the new bytes) before its bit is set in memory; copy-ups of one granule are serialised by
// a striped lock and recheck the bit under it. A run of whole granules zeroed with may_punch
// becomes one hole in .data plus their bits. Flush order makes the map never point at data that is not durable:
// copy the dirty map pages, fdatasync .data, write the copies, fdatasync .map. After a failed
// fdatasync the kernel may have dropped dirty pages, so the volume refuses further writes and
// flushes rather than ever persist a bit for data that may be gone.
//
// Background verification: where granule files let a copy-up check only the 64 KiB it reads,
// the rest of that base block stays unverified, and the next snapshot, which reads every dirty
// block whole through the base, would verify it then, on its own time. A writable volume with
// granule files therefore queues each base block a write lands in, and one thread at the idle
// scheduling class (SCHED_IDLE: only CPU nobody else wants) verifies the queued blocks whole,
// once no write has come to any such volume of the process for 50 ms (its whole-block reads would
// otherwise compete for the disk with copy-ups: strided copy-up writes ran at 0.44x qemu-nbd's
// speed against 1.06x without it, and at 0.72x while another disk's verifier ran).
// It also waits while a snapshot's scan or a flatten runs in the process (VerifierPause), and
// reads a cold block whole with one O_DIRECT read where it can (BaseView::read_whole_direct).
// It holds no lock across a block, takes the base view as it is at each block, and is stopped and
// joined by close(). A damaged block it finds (DigestMismatch, BlockCorrupt) goes to
// VolumeSpec::on_verify_damage, so that it is recorded for repair now: a read may never need the
// damaged part, or need it only after the disk that held the good content has changed. Other
// errors it swallows (the read or scan that needs the block meets them again).
//
// Verification read-ahead: sequential reads have the base blocks ahead of them verified on a
// thread of their own (volume/verify_ahead.h), stopped and joined by close() too.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/held_bytes.h"
#include "formats/block_source.h"
#include "volume/base_view.h"
#include "volume/cow_layer.h"
#include "volume/verify_ahead.h"
#include "volume/volume_source.h"

namespace blocksnap {

struct VolumeSpec {
  std::string store_dir;
  // <data-dir>/granules (core/granule_file.h); empty: every first touch verifies a whole block.
  std::string granule_dir;
  uint64_t block_size = 0;
  uint64_t size_bytes = 0;
  // ceil(size_bytes / block_size) × 32; copied by the constructor, which keeps no reference to it.
  HeldBytes base_digests;
  std::vector<LayerFiles> layers;     // bottom → top
  bool writable = false;              // the top layer takes writes (needs a layer)
  // Writable volumes with granule files: verify the blocks writes land in on an idle thread
  // (see above). Off, the next read or scan of such a block verifies the rest.
  bool background_verify = false;
  // Called on the verifier thread with the error a read of each damaged block it finds would
  // throw (with the digest and path). Dropped by close(), once that thread is joined.
  std::function<void(const Error&)> on_verify_damage;
};

class CowVolume {
 public:
  // Opens and validates every layer. Throws InvalidArgument, ImageCorrupt, ImageNotFound, IOError.
  explicit CowVolume(const VolumeSpec& spec);
  ~CowVolume();
  CowVolume(const CowVolume&) = delete;
  CowVolume& operator=(const CowVolume&) = delete;

  uint64_t size() const noexcept { return size_; }
  bool writable() const noexcept { return writable_; }
  size_t layer_count() const;

  void read(uint64_t offset, size_t len, uint8_t* out) const;
  // read() without waiting for a disk (io/file_io.h read_cached_at): true when it filled `out` from
  // the page cache and blocks already verified. False when it would wait, or failed: the caller
  // reads again with read() on a thread that may wait, which reports any error.
  bool read_cached(uint64_t offset, size_t len, uint8_t* out) const noexcept;
  void write(uint64_t offset, const uint8_t* data, size_t len, bool fua);
  // Whether a write of [offset, offset + len) would copy up, that is read the layers below or
  // the base for a granule it covers only in part; true too when that cannot be told without
  // waiting. A hint for scheduling (a copy-up may wait for a disk): writes change it.
  bool write_copies_up(uint64_t offset, size_t len) const noexcept;
  void zero(uint64_t offset, uint64_t len, bool may_punch, bool fua);
  void flush();
  // The first `max_extents` extents of the range (stack_extents).
  std::vector<VolumeExtent> extents(uint64_t offset, uint64_t len, size_t max_extents) const;

  // Flushes the top, freezes it and opens `files` as the new writable top. The caller keeps
  // writes, zeros and flushes out meanwhile.
  void push_layer(const LayerFiles& files);
  // Undoes a push_layer whose top took no write: closes the top and makes the layer below the
  // writable top again (reopened for writing, as a volume opened on it would). False, and nothing
  // changes, when the top holds a written granule or is the only layer. The caller keeps writes,
  // zeros and flushes out meanwhile.
  bool pop_empty_top();
  // Sorted block indexes with any granule set in the bottom `layer_count` layers.
  std::vector<uint32_t> dirty_blocks(size_t layer_count) const;
  // The content through the bottom `layer_count` layers and the base, as a BlockSource that
  // stays valid (and unchanged) whatever happens to the volume afterwards.
  std::unique_ptr<VolumeSource> source(size_t layer_count) const;
  // Replaces the base and closes the bottom `drop_layers` layers. The new view is made before the
  // stack lock is taken exclusively, so I/O waits only for the swap; the caller keeps other
  // changes of the stack (push_layer, pop_empty_top, rebase) out until it returns.
  void rebase(std::span<const uint8_t> base_digests, size_t drop_layers);
  // Flushes if writable and closes every file; later calls throw.
  void close();
  // Bytes of the disk written since the base: set in any layer's map, TRIMs and zeroes included,
  // bits not flushed yet included (volume/written_count.h). Kept as bits are set, so asking costs
  // nothing whatever the size; it equals written_bytes_of_maps of the layers once flushed. After
  // close(), the count at the close (which flushed, unless it threw). Takes no lock: it is asked
  // on the JS thread, and close, push_layer and rebase hold the stack lock across fdatasync or a
  // map read.
  uint64_t written_bytes() const;

  // Returns once the verification read-ahead (volume/verify_ahead.h) has nothing queued or
  // under way: what it verified is then visible to reads.
  void wait_for_verify_ahead() const { verify_ahead_.wait_idle(); }

  const std::string& store_dir() const noexcept { return store_dir_; }
  const std::string& granule_dir() const noexcept { return granule_dir_; }
  uint64_t block_size() const noexcept { return block_size_; }
  // Bytes read from block files since the volume opened (whole blocks verified, granules
  // verified, in-place reads), whoever read them: reads, copy-ups, scans, flattens.
  uint64_t store_bytes_read() const noexcept { return cache_->bytes_read(); }

  // Held by a job that reads dirty blocks or the whole volume (a snapshot's scan, a flatten):
  // verifiers of every volume of the process wait until none is left. Such a job verifies what it
  // reads itself, so a verifier would only compete with it for the disk and read blocks twice.
  class VerifierPause {
   public:
    VerifierPause() noexcept { reads_running_.fetch_add(1, std::memory_order_relaxed); }
    ~VerifierPause() { reads_running_.fetch_sub(1, std::memory_order_relaxed); }
    VerifierPause(const VerifierPause&) = delete;
    VerifierPause& operator=(const VerifierPause&) = delete;
  };

 private:
  void check_open() const;
  void check_writes_allowed() const;
  // Runs apply(top, layers below it) under the stack lock after the checks every change needs,
  // then flushes when `fua`.
  template <typename F>
  void modify(uint64_t offset, uint64_t len, bool fua, F&& apply);
  void write_granule(CowLayer& top, LayerStack below, uint64_t g, uint64_t from, uint64_t to, const uint8_t* bytes);
  // Granules first..last of the top, whole, made to read as zeros (a hole where may_punch allows).
  void zero_granules(CowLayer& top, LayerStack below, uint64_t first, uint64_t last, bool may_punch);
  // Sets granule g of the top and counts the pieces that adds to written_pieces_.
  void set_top_bit(CowLayer& top, LayerStack below, uint64_t g);
  void flush_locked();
  // The count as the atomics below stand.
  uint64_t live_written_bytes() const;
  // Whether a layer holds the disk's last piece (shorter than 4 KiB when the size is not a
  // multiple of it): counted afresh with the pieces, under the exclusive stack lock.
  bool last_piece_set_locked() const;
  // Background verification (see the class comment): queues block i of the base when it is
  // not verified whole yet; the thread verifies what is queued.
  void queue_verify(const BaseView& base, uint64_t i);
  void verify_loop();
  void stop_verifier();
  std::mutex& granule_lock(uint64_t g) { return granule_locks_[g % granule_locks_.size()]; }
  // The locks of granules first..last, taken in stripe order (all of them for a long run), so
  // that two runs never wait for each other in a cycle; released in the destructor.
  class GranuleRunLock {
   public:
    GranuleRunLock(CowVolume& v, uint64_t first, uint64_t last);
    ~GranuleRunLock();
    GranuleRunLock(const GranuleRunLock&) = delete;
    GranuleRunLock& operator=(const GranuleRunLock&) = delete;

   private:
    CowVolume& v_;
    size_t begin_;  // stripes [begin_, begin_ + count_) modulo the stripe count
    size_t count_;
  };

  const std::string store_dir_;
  const std::string granule_dir_;
  const uint64_t block_size_;
  const uint64_t size_;
  const bool writable_;
  std::shared_ptr<BlockFileCache> cache_;

  mutable std::shared_mutex stack_mutex_;
  std::vector<std::shared_ptr<CowLayer>> layers_;
  std::shared_ptr<const BaseView> base_;
  bool closed_ = false;
  // 4 KiB pieces set in any layer (written_bytes): counted afresh when the stack loses layers,
  // added to as the top's bits are set.
  std::atomic<uint64_t> written_pieces_{0};
  std::atomic<bool> last_piece_set_{false};
  std::atomic<uint64_t> written_at_close_{0};
  std::atomic<bool> count_closed_{false};

  std::mutex flush_mutex_;  // one flush at a time; taken after stack_mutex_
  std::atomic<bool> failed_{false};
  std::array<std::mutex, 256> granule_locks_;

  std::mutex verify_mutex_;
  std::condition_variable verify_cv_;
  std::deque<uint64_t> verify_queue_;
  std::vector<bool> verify_queued_;  // by block index, under verify_mutex_
  bool verify_stop_ = false;
  std::function<void(const Error&)> on_verify_damage_;  // used by the verifier thread only
  // steady_clock of the last write into any verifying volume of the process: the volumes of one
  // host share its disks, so a verifier waits for all of them to pause.
  static inline std::atomic<int64_t> last_write_ns_{0};
  // Scans and flattens of volumes of the process under way (VerifierPause).
  static inline std::atomic<int> reads_running_{0};
  static constexpr std::chrono::milliseconds kVerifyAfterQuiet{50};
  std::thread verifier_;  // writable volumes using granule files only
  // Whether verifier_ was started: set by the constructor only, so that writes may ask it while
  // close() joins (and so changes) verifier_.
  bool background_verify_ = false;
  // close() may run twice at once (the addon queues each on the pool): the second waits for the
  // first rather than join the same threads with it.
  std::mutex close_mutex_;
  // Reads note themselves here (const reads: the read-ahead is not the volume's state). Last, so
  // that it goes first; close() and the destructor stop it before anything it uses.
  mutable VerifyAhead verify_ahead_{[this] { return base_now(); }};
  // The base view, or null once closed: for the read-ahead thread.
  std::shared_ptr<const BaseView> base_now() const;
};

}  // namespace blocksnap
