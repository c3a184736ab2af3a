#include "volume/cow_volume.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/digest.h"
#include "core/error.h"
#include "io/direct_io.h"
#include "io/file_io.h"
#include "io/punch_hole.h"
#include "volume/cow_format.h"
#include "volume/volume_source.h"
#include "volume/written_count.h"

namespace blocksnap {

namespace {

const uint8_t kZeros[kCowMaxGranuleSize] = {};

// Writes zeros over [offset, offset + len) of `fd`.
void write_zeros(int fd, uint64_t offset, uint64_t len, const std::string& path) {
  for (uint64_t done = 0; done < len;) {
    const uint64_t n = std::min<uint64_t>(len - done, sizeof kZeros);
    write_at(fd, kZeros, static_cast<size_t>(n), offset + done, path);
    done += n;
  }
}

[[noreturn]] void invalid(const std::string& what) { throw Error(ErrorCode::InvalidArgument, what); }

void check_range(uint64_t offset, uint64_t len, uint64_t size) {
  if (offset > size || len > size - offset)
    invalid("range " + std::to_string(offset) + "+" + std::to_string(len) + " is past the end of the volume (" +
            std::to_string(size) + " bytes)");
}

}  // namespace

CowVolume::CowVolume(const VolumeSpec& spec)
    : store_dir_(spec.store_dir),
      granule_dir_(spec.granule_dir),
      block_size_(spec.block_size),
      size_(spec.size_bytes),
      writable_(spec.writable),
      // Only volumes that take writes record granule files (a read-only export leaves the store
      // as it found it); every volume uses the files it finds, which snapshot scans write for
      // the blocks they store (docs/design.md, "Copy-on-write disks").
      cache_(std::make_shared<BlockFileCache>(spec.store_dir, spec.granule_dir, spec.writable)) {
  if (!is_valid_block_size(block_size_)) invalid("invalid block size");
  if (writable_ && spec.layers.empty()) invalid("a writable volume needs at least one layer");
  base_ = std::make_shared<const BaseView>(cache_, block_size_, size_, std::span(spec.base_digests.data(), spec.base_digests.size()), nullptr);
  for (size_t i = 0; i < spec.layers.size(); ++i)
    layers_.push_back(std::make_shared<CowLayer>(spec.layers[i], size_, writable_ && i + 1 == spec.layers.size()));
  written_pieces_.store(written_pieces(layers_, size_), std::memory_order_release);
  last_piece_set_.store(last_piece_set_locked(), std::memory_order_release);
  if (writable_ && spec.background_verify && base_->uses_granules()) {
    verify_queued_.assign(base_->block_count(), false);
    on_verify_damage_ = spec.on_verify_damage;
    try {
      verifier_ = std::thread([this] { verify_loop(); });
      background_verify_ = true;
    } catch (const std::system_error&) {
      // No thread to be had: snapshots verify what copy-ups left, as without granule files.
    }
  }
}

void CowVolume::check_open() const {
  if (closed_) throw std::logic_error("the volume is closed");
}

void CowVolume::check_writes_allowed() const {
  check_open();
  if (!writable_) invalid("the volume is read-only");
  if (failed_.load(std::memory_order_acquire))
    throw Error(ErrorCode::IOError, "an earlier flush of this volume failed; it takes no more writes until reopened");
}

size_t CowVolume::layer_count() const {
  std::shared_lock lock(stack_mutex_);
  return layers_.size();
}

void CowVolume::read(uint64_t offset, size_t len, uint8_t* out) const {
  std::shared_lock lock(stack_mutex_);
  check_open();
  check_range(offset, len, size_);
  read_through(layers_, *base_, offset, len, out);
  verify_ahead_.note_read(*base_, offset, len);
}

bool CowVolume::read_cached(uint64_t offset, size_t len, uint8_t* out) const noexcept {
  // Not even a lock is waited for: the stack's writers (a new layer, a rebase, close) flush.
  std::shared_lock lock(stack_mutex_, std::try_to_lock);
  if (!lock.owns_lock() || closed_ || offset > size_ || len > size_ - offset) return false;
  if (!read_through_cached(layers_, *base_, offset, len, out)) return false;
  verify_ahead_.note_read(*base_, offset, len);
  return true;
}

std::shared_ptr<const BaseView> CowVolume::base_now() const {
  std::shared_lock lock(stack_mutex_);
  return closed_ ? nullptr : base_;
}

template <typename F>
void CowVolume::modify(uint64_t offset, uint64_t len, bool fua, F&& apply) {
  {
    std::shared_lock lock(stack_mutex_);
    check_writes_allowed();
    check_range(offset, len, size_);
    apply(*layers_.back(), LayerStack(layers_.data(), layers_.size() - 1));
  }
  if (fua) flush();
}

void CowVolume::write(uint64_t offset, const uint8_t* data, size_t len, bool fua) {
  modify(offset, len, fua, [&](CowLayer& top, LayerStack below) {
    const uint64_t gs = top.map.granule_size();
    const uint64_t end = offset + len;
    for (uint64_t pos = offset; pos < end;) {
      const uint64_t g = pos / gs;
      if (top.map.test(g)) {
        // Already in the top layer: one pwrite for the whole run of such granules.
        uint64_t run_end = std::min(end, (g + 1) * gs);
        while (run_end < end && top.map.test(run_end / gs)) run_end = std::min(end, run_end + gs);
        write_at(top.data.get(), data + (pos - offset), run_end - pos, pos, top.files.data_path);
        pos = run_end;
      } else {
        const uint64_t piece_end = std::min(end, (g + 1) * gs);
        write_granule(top, below, g, pos, piece_end, data + (pos - offset));
        pos = piece_end;
      }
    }
  });
}

bool CowVolume::write_copies_up(uint64_t offset, size_t len) const noexcept {
  std::shared_lock lock(stack_mutex_, std::try_to_lock);
  if (!lock.owns_lock() || closed_ || !writable_ || layers_.empty() || len == 0 || offset > size_ || len > size_ - offset) return true;
  const CowLayer& top = *layers_.back();
  const uint64_t gs = top.map.granule_size();
  const uint64_t end = offset + len;
  for (uint64_t g = offset / gs; g * gs < end; ++g) {
    const uint64_t g_begin = g * gs;
    const uint64_t g_end = std::min(size_, g_begin + gs);
    if (!top.map.test(g) && (offset > g_begin || end < g_end)) return true;
  }
  return false;
}

void CowVolume::write_granule(CowLayer& top, LayerStack below, uint64_t g, uint64_t from, uint64_t to, const uint8_t* bytes) {
  if (background_verify_) {
    last_write_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    queue_verify(*base_, g * top.map.granule_size() / block_size_);
  }
  std::lock_guard lock(granule_lock(g));
  if (top.map.test(g)) {  // another write copied it up while this one waited
    write_at(top.data.get(), bytes, to - from, from, top.files.data_path);
    return;
  }
  const uint64_t begin = g * top.map.granule_size();
  const uint64_t end = std::min(size_, begin + top.map.granule_size());
  if (from == begin && to == end) {
    write_at(top.data.get(), bytes, to - from, from, top.files.data_path);
  } else {
    // Copy-up: the whole granule goes to the top, since the bit will claim all of it.
    thread_local AlignedBuffer buf(kCowMaxGranuleSize);
    read_through(below, *base_, begin, end - begin, buf.data());
    std::memcpy(buf.data() + (from - begin), bytes, to - from);
    write_at(top.data.get(), buf.data(), end - begin, begin, top.files.data_path);
  }
  set_top_bit(top, below, g);
}

void CowVolume::set_top_bit(CowLayer& top, LayerStack below, uint64_t g) {
  // Only the call that set the bit counts it; the layers below are frozen while the shared stack
  // lock is held, so what it adds cannot change under it.
  if (!top.map.set(g)) return;
  if (size_ > 0 && g == (size_ - 1) / top.map.granule_size()) last_piece_set_.store(true, std::memory_order_release);
  written_pieces_.fetch_add(pieces_added(top.map, below, g, size_), std::memory_order_acq_rel);
}

uint64_t CowVolume::written_bytes() const {
  if (count_closed_.load(std::memory_order_acquire)) return written_at_close_.load(std::memory_order_acquire);
  return live_written_bytes();
}

uint64_t CowVolume::live_written_bytes() const {
  return written_bytes_of(written_pieces_.load(std::memory_order_acquire), last_piece_set_.load(std::memory_order_acquire), size_);
}

bool CowVolume::last_piece_set_locked() const {
  return size_ > 0 && layer_at(layers_, size_ - 1) >= 0;
}

CowVolume::GranuleRunLock::GranuleRunLock(CowVolume& v, uint64_t first, uint64_t last) : v_(v) {
  const size_t stripes = v.granule_locks_.size();
  count_ = last - first + 1 >= stripes ? stripes : static_cast<size_t>(last - first + 1);
  begin_ = count_ == stripes ? 0 : static_cast<size_t>(first % stripes);
  // Ascending stripe order whatever the run: the part of a run that wraps past the last stripe
  // (stripes 0, 1, ...) is taken first.
  const size_t wrapped = begin_ + count_ > stripes ? begin_ + count_ - stripes : 0;
  for (size_t i = 0; i < wrapped; ++i) v.granule_locks_[i].lock();
  for (size_t i = begin_; i < begin_ + count_ - wrapped; ++i) v.granule_locks_[i].lock();
}

CowVolume::GranuleRunLock::~GranuleRunLock() {
  const size_t stripes = v_.granule_locks_.size();
  for (size_t k = 0; k < count_; ++k) v_.granule_locks_[(begin_ + k) % stripes].unlock();
}

void CowVolume::zero_granules(CowLayer& top, LayerStack below, uint64_t first, uint64_t last, bool may_punch) {
  // One punch (or one run of zero writes) for the whole run, then the bits, under the run's
  // granule locks: a copy-up in one of these granules rewrites the whole granule with what it
  // read below, so it must land wholly before the zeros or see their bits and write only its part.
  GranuleRunLock lock(*this, first, last);
  const uint64_t gs = top.map.granule_size();
  const uint64_t begin = first * gs;
  const uint64_t len = std::min(size_, (last + 1) * gs) - begin;
  if (!may_punch || !punch_hole(top.data.get(), begin, len, top.files.data_path))
    write_zeros(top.data.get(), begin, len, top.files.data_path);
  for (uint64_t g = first; g <= last; ++g) set_top_bit(top, below, g);
}

void CowVolume::zero(uint64_t offset, uint64_t len, bool may_punch, bool fua) {
  modify(offset, len, fua, [&](CowLayer& top, LayerStack below) {
    const uint64_t gs = top.map.granule_size();
    const uint64_t end = offset + len;
    for (uint64_t pos = offset; pos < end;) {
      const uint64_t g = pos / gs;
      const uint64_t g_begin = g * gs;
      const uint64_t g_end = std::min(size_, g_begin + gs);
      if (pos == g_begin && g_end <= end) {
        // Whole granules, as many as the range covers.
        const uint64_t whole_end = end == size_ ? end : end / gs * gs;
        zero_granules(top, below, g, (whole_end - 1) / gs, may_punch);
        pos = whole_end;
        continue;
      }
      const uint64_t piece_end = std::min(end, g_end);
      if (top.map.test(g)) write_at(top.data.get(), kZeros, piece_end - pos, pos, top.files.data_path);
      else write_granule(top, below, g, pos, piece_end, kZeros);
      pos = piece_end;
    }
  });
}

void CowVolume::flush() {
  std::shared_lock lock(stack_mutex_);
  check_open();
  if (!writable_) return;
  flush_locked();
}

void CowVolume::flush_locked() {
  std::lock_guard flush_lock(flush_mutex_);
  if (failed_.load(std::memory_order_acquire))
    throw Error(ErrorCode::IOError, "an earlier flush of this volume failed; it takes no more writes until reopened");
  CowLayer& top = *layers_.back();
  try {
    // Copies first: a bit set after this point may belong to data the fdatasync below misses.
    const std::vector<CowMap::PageCopy> pages = top.map.take_dirty_pages();
    if (::fdatasync(top.data.get()) != 0) throw Error::system(errno, "fdatasync", top.files.data_path);
    top.map.write_pages(pages);
  } catch (...) {
    failed_.store(true, std::memory_order_release);
    throw;
  }
}

std::vector<VolumeExtent> CowVolume::extents(uint64_t offset, uint64_t len, size_t max_extents) const {
  std::shared_lock lock(stack_mutex_);
  check_open();
  check_range(offset, len, size_);
  return stack_extents(layers_, *base_, offset, len, max_extents);
}

void CowVolume::push_layer(const LayerFiles& files) {
  std::unique_lock lock(stack_mutex_);
  check_writes_allowed();
  // Open the new top first: if it is unusable, the volume goes on as it was.
  auto next = std::make_shared<CowLayer>(files, size_, true);
  flush_locked();
  layers_.push_back(std::move(next));
}

bool CowVolume::pop_empty_top() {
  std::unique_lock lock(stack_mutex_);
  check_writes_allowed();
  if (layers_.size() < 2 || layers_.back()->map.any_set(0, layers_.back()->map.granules())) return false;
  // Open before changing anything: if the layer below cannot be opened for writing, the volume
  // goes on as it was.
  auto below = std::make_shared<CowLayer>(layers_[layers_.size() - 2]->files, size_, true);
  layers_.pop_back();
  layers_.back() = std::move(below);
  return true;
}

std::vector<uint32_t> CowVolume::dirty_blocks(size_t layer_count) const {
  std::shared_lock lock(stack_mutex_);
  check_open();
  if (layer_count > layers_.size()) invalid("layer count " + std::to_string(layer_count) + " is more than the volume's " + std::to_string(layers_.size()) + " layers");
  // Block by block, a bitmap word at a time: a 4 KiB-granule layer of a 1 TiB disk written all
  // over has 2^28 bits, too many to visit one by one.
  std::vector<uint32_t> out;
  for (uint64_t i = 0; i < base_->block_count(); ++i) {
    for (size_t l = 0; l < layer_count; ++l) {
      const CowMap& map = layers_[l]->map;
      const uint64_t per_block = block_size_ / map.granule_size();
      if (map.any_set(i * per_block, (i + 1) * per_block)) {
        out.push_back(static_cast<uint32_t>(i));
        break;
      }
    }
  }
  return out;
}

std::unique_ptr<VolumeSource> CowVolume::source(size_t layer_count) const {
  std::shared_lock lock(stack_mutex_);
  check_open();
  if (layer_count > layers_.size()) invalid("layer count " + std::to_string(layer_count) + " is more than the volume's " + std::to_string(layers_.size()) + " layers");
  std::vector<std::shared_ptr<CowLayer>> layers(layers_.begin(), layers_.begin() + static_cast<ptrdiff_t>(layer_count));
  return std::make_unique<VolumeSource>(std::move(layers), base_, size_);
}

void CowVolume::rebase(std::span<const uint8_t> base_digests, size_t drop_layers) {
  const auto check = [&] {
    check_open();
    if (drop_layers > layers_.size() || (writable_ && drop_layers == layers_.size()))
      invalid("cannot drop " + std::to_string(drop_layers) + " of " + std::to_string(layers_.size()) + " layers" +
              (writable_ ? " (the writable top stays)" : ""));
  };
  // The new view is made under the shared lock, I/O going on: it copies the digests and compares
  // every block with the old view's, which for a 15 TiB disk is 4 million blocks. What the old
  // view verifies meanwhile is not carried over, and is verified again when next needed.
  std::shared_ptr<const BaseView> next;
  {
    std::shared_lock lock(stack_mutex_);
    check();
    next = std::make_shared<const BaseView>(cache_, block_size_, size_, base_digests, base_.get());
  }
  std::unique_lock lock(stack_mutex_);
  check();  // only close() can have run meanwhile: the caller keeps stack changes out
  base_ = std::move(next);
  layers_.erase(layers_.begin(), layers_.begin() + static_cast<ptrdiff_t>(drop_layers));
  // Bits of the dropped layers are now the base's: one pass over what stays (none when only the
  // top stays, as after a snapshot: its own count).
  if (drop_layers > 0) {
    written_pieces_.store(written_pieces(layers_, size_), std::memory_order_release);
    last_piece_set_.store(last_piece_set_locked(), std::memory_order_release);
  }
}

void CowVolume::queue_verify(const BaseView& base, uint64_t i) {
  if (base.block_verified(i) || base.zero_block(i)) return;
  {
    std::lock_guard lock(verify_mutex_);
    if (verify_stop_ || verify_queued_[i]) return;
    verify_queued_[i] = true;
    verify_queue_.push_back(i);
  }
  verify_cv_.notify_one();
}

void CowVolume::verify_loop() {
  sched_param idle{};
  ::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &idle);  // best effort
  AlignedBuffer buf(block_frame_size(block_size_));  // for BaseView::read_whole_direct
  for (;;) {
    uint64_t i;
    {
      std::unique_lock lock(verify_mutex_);
      verify_cv_.wait(lock, [this] { return verify_stop_ || !verify_queue_.empty(); });
      // Only once the writes have paused: a verification reads a whole block from the store,
      // and the disk is not scheduled by CPU priority.
      for (;;) {
        using std::chrono::steady_clock;
        const auto quiet = steady_clock::now() - steady_clock::time_point(steady_clock::duration(last_write_ns_.load(std::memory_order_relaxed)));
        const bool reading = reads_running_.load(std::memory_order_relaxed) > 0;
        if (verify_stop_ || (quiet >= kVerifyAfterQuiet && !reading)) break;
        verify_cv_.wait_for(lock, reading ? kVerifyAfterQuiet : kVerifyAfterQuiet - quiet);
      }
      if (verify_stop_) return;
      i = verify_queue_.front();
      verify_queue_.pop_front();
      verify_queued_[i] = false;
    }
    std::shared_ptr<const BaseView> base;
    {
      std::shared_lock lock(stack_mutex_);
      if (closed_) return;
      base = base_;
    }
    if (i >= base->block_count() || base->block_verified(i) || base->zero_block(i)) continue;
    try {
      // One direct read and one hash of the whole block where that can be had: reading its
      // granules one by one through the cache costs a copy into fresh page-cache pages, and ran
      // alongside the snapshot that followed the writes.
      if (!base->read_whole_direct(i, buf.data())) {
        const uint64_t offset = i * block_size_;
        base->read(offset, static_cast<size_t>(std::min(block_size_, size_ - offset)), buf.data());
      }
    } catch (const Error& e) {
      if (on_verify_damage_ && e.digest && (e.code() == ErrorCode::DigestMismatch || e.code() == ErrorCode::BlockCorrupt)) {
        try {
          on_verify_damage_(e);
        } catch (...) {
          // Recording is best effort: the read that needs the block meets the damage anyway.
        }
      }
    } catch (...) {
      // A missing block, an I/O error: whoever reads it next gets the error.
    }
  }
}

void CowVolume::stop_verifier() {
  if (!verifier_.joinable()) return;
  {
    std::lock_guard lock(verify_mutex_);
    verify_stop_ = true;
  }
  verify_cv_.notify_all();
  verifier_.join();
}

CowVolume::~CowVolume() {
  stop_verifier();
  verify_ahead_.stop();
}

void CowVolume::close() {
  std::lock_guard closing(close_mutex_);
  stop_verifier();
  verify_ahead_.stop();
  // What it holds (the addon's thread-safe function) is let go now, not when JS collects the volume.
  on_verify_damage_ = nullptr;
  std::unique_lock lock(stack_mutex_);
  if (closed_) return;
  std::exception_ptr flush_error;
  if (writable_ && !failed_.load()) {
    try {
      flush_locked();
    } catch (...) {
      flush_error = std::current_exception();
    }
  }
  written_at_close_.store(live_written_bytes(), std::memory_order_release);
  count_closed_.store(true, std::memory_order_release);
  layers_.clear();
  base_.reset();
  // The cache outlives the volume's I/O (VolumeSources share it, store_bytes_read reads it), but
  // its files close now: no read of this volume is in flight under the exclusive lock.
  cache_->close();
  closed_ = true;
  if (flush_error) std::rethrow_exception(flush_error);
}

}  // namespace blocksnap
