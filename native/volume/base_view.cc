#include "volume/base_view.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <vector>

#include "core/block_format.h"
#include "core/block_reader.h"
#include "core/error.h"
#include "core/store_layout.h"
#include "io/direct_io.h"
#include "io/file_io.h"
#include "io/open_regular.h"
#include "io/page_cache.h"

namespace blocksnap {

namespace {

// Open block files kept by all volumes of the process together (kept_files_budget()).
std::atomic<size_t> g_kept_files{0};

// Every cache alive, for trim_to_budget(). Taken before any cache's own lock, never after.
std::mutex g_caches_mutex;
std::vector<BlockFileCache*>& live_caches() {
  static auto* caches = new std::vector<BlockFileCache*>;  // never destroyed: caches may outlive statics
  return *caches;
}

template <typename T>
void put_bounded(DigestLru<T>& lru, const Digest& d, T value, size_t max) {
  lru.put(d, std::move(value));
  while (lru.size() > max) lru.evict_oldest();
}

// An error about block file `path` holding digest `d`: "block <hex> <what>".
[[noreturn]] void throw_block_error(ErrorCode code, const Digest& d, const std::string& path, const std::string& what) {
  Error e(code, "block " + to_hex(d) + " " + what);
  e.path = path;
  throw std::move(e).with_digest(d);
}

// Calls f(i, x, n, done) for each piece of [offset, offset + len) within one block: block i,
// bytes [x, x + n) of it, `done` bytes of the range before it. Stops early when f returns false.
template <typename F>
bool each_block_piece(uint64_t block_size, uint64_t offset, size_t len, F&& f) {
  const uint64_t end = offset + len;
  for (uint64_t pos = offset; pos < end;) {
    const uint64_t i = pos / block_size;
    const size_t n = static_cast<size_t>(std::min(end, (i + 1) * block_size) - pos);
    if (!f(i, pos - i * block_size, n, static_cast<size_t>(pos - offset))) return false;
    pos += n;
  }
  return true;
}

}  // namespace

// The daemon's sockets, images and store writers need the other three quarters.
size_t BlockFileCache::kept_files_budget() noexcept {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return size_t{4096};
  return static_cast<size_t>(r.rlim_cur / 4);
}

size_t BlockFileCache::kept_files() noexcept { return g_kept_files.load(std::memory_order_relaxed); }

void BlockFileCache::register_cache() {
  std::lock_guard registry(g_caches_mutex);
  live_caches().push_back(this);
}

BlockFileCache::~BlockFileCache() {
  {
    std::lock_guard registry(g_caches_mutex);
    auto& caches = live_caches();
    caches.erase(std::find(caches.begin(), caches.end(), this));
  }
  g_kept_files.fetch_sub(files_.size(), std::memory_order_relaxed);
}

void BlockFileCache::trim_to_budget() noexcept {
  std::lock_guard registry(g_caches_mutex);
  const size_t budget = kept_files_budget();
  while (g_kept_files.load(std::memory_order_relaxed) > budget) {
    BlockFileCache* most = nullptr;
    for (BlockFileCache* c : live_caches())
      if (most == nullptr || c->kept_count_.load(std::memory_order_relaxed) > most->kept_count_.load(std::memory_order_relaxed)) most = c;
    if (most == nullptr) return;
    std::lock_guard lock(most->mutex_);
    if (!most->files_.evict_oldest()) return;  // the counts moved meanwhile: another trim got there
    most->kept_count_.fetch_sub(1, std::memory_order_relaxed);
    g_kept_files.fetch_sub(1, std::memory_order_relaxed);
  }
}

size_t BlockFileCache::close_idle(std::chrono::steady_clock::duration idle) {
  const auto cutoff = std::chrono::steady_clock::now() - idle;
  // Destroyed after the locks are released, as close() does: closing files and unmapping
  // payloads should not hold up the readers of any volume.
  std::vector<std::shared_ptr<const OpenBlock>> files;
  std::vector<std::shared_ptr<const AlignedBuffer>> payloads;
  std::vector<std::shared_ptr<const GranuleDigests>> granules;
  {
    std::lock_guard registry(g_caches_mutex);
    for (BlockFileCache* c : live_caches()) {
      std::lock_guard lock(c->mutex_);
      auto f = c->files_.evict_unused_since(cutoff);
      c->kept_count_.fetch_sub(f.size(), std::memory_order_relaxed);
      g_kept_files.fetch_sub(f.size(), std::memory_order_relaxed);
      std::move(f.begin(), f.end(), std::back_inserter(files));
      auto p = c->payloads_.evict_unused_since(cutoff);
      std::move(p.begin(), p.end(), std::back_inserter(payloads));
      auto g = c->granules_.evict_unused_since(cutoff);
      std::move(g.begin(), g.end(), std::back_inserter(granules));
    }
  }
  return files.size();
}

void BlockFileCache::close() noexcept {
  // Moved out and destroyed after the lock is released: closing up to kMaxFiles files and freeing
  // payloads of a block each should not hold up a reader of another volume's source.
  DigestLru<std::shared_ptr<const AlignedBuffer>> payloads;
  DigestLru<std::shared_ptr<const OpenBlock>> files;
  DigestLru<std::shared_ptr<const GranuleDigests>> granules;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    std::swap(payloads, payloads_);
    std::swap(files, files_);
    std::swap(granules, granules_);
    kept_count_.store(0, std::memory_order_relaxed);
    g_kept_files.fetch_sub(files.size(), std::memory_order_relaxed);
  }
}

std::shared_ptr<const AlignedBuffer> BlockFileCache::payload(const Digest& d) {
  std::lock_guard lock(mutex_);
  auto* hit = payloads_.find(d);
  return hit ? *hit : nullptr;
}

void BlockFileCache::put_payload(const Digest& d, std::shared_ptr<const AlignedBuffer> payload) {
  std::lock_guard lock(mutex_);
  if (closed_) return;
  put_bounded(payloads_, d, std::move(payload), kMaxPayloads);
}

std::shared_ptr<const BlockFileCache::OpenBlock> BlockFileCache::kept_file(const Digest& d) {
  std::lock_guard lock(mutex_);
  auto* hit = files_.find(d);
  return hit ? *hit : nullptr;
}

std::shared_ptr<const BlockFileCache::OpenBlock> BlockFileCache::keep_file(const Digest& d, UniqueFd fd, std::string path) {
  auto block = std::make_shared<OpenBlock>(OpenBlock{std::move(fd), std::move(path)});
  {
    std::lock_guard lock(mutex_);
    if (closed_ || !files_.put(d, block)) return block;
    kept_count_.fetch_add(1, std::memory_order_relaxed);
    g_kept_files.fetch_add(1, std::memory_order_relaxed);
    if (files_.size() > kMaxFiles) {
      files_.evict_oldest();
      kept_count_.fetch_sub(1, std::memory_order_relaxed);
      g_kept_files.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  if (g_kept_files.load(std::memory_order_relaxed) > kept_files_budget()) trim_to_budget();
  return block;
}

std::shared_ptr<const BlockFileCache::OpenBlock> BlockFileCache::file(const Digest& d) {
  if (auto kept = kept_file(d)) return kept;
  std::string path = block_file_path(store_dir_, d);
  UniqueFd fd = open_block_file(path, d);
  return keep_file(d, std::move(fd), std::move(path));
}

void BlockFileCache::forget_file(const Digest& d) noexcept {
  std::lock_guard lock(mutex_);
  if (files_.erase(d)) {
    kept_count_.fetch_sub(1, std::memory_order_relaxed);
    g_kept_files.fetch_sub(1, std::memory_order_relaxed);
  }
}

std::shared_ptr<const BlockFileCache::OpenBlock> BlockFileCache::cached_file(const Digest& d) noexcept {
  try {
    if (auto kept = kept_file(d)) return kept;
    std::string path = block_file_path(store_dir_, d);
    UniqueFd fd(open_cached(path.c_str(), kOpenRegularFlags));
    // A lookup that would read the disk, or a failure (not a regular file included) file() reports.
    if (!fd || !opened_regular(fd.get())) return nullptr;
    return keep_file(d, std::move(fd), std::move(path));
  } catch (...) {
    return nullptr;
  }
}

std::shared_ptr<const GranuleDigests> BlockFileCache::granules(const Digest& d, uint64_t raw_length) {
  if (granule_dir_.empty()) return nullptr;
  {
    std::lock_guard lock(mutex_);
    if (auto* hit = granules_.find(d); hit && (*hit)->raw_length == raw_length) return *hit;
  }
  auto loaded = load_granule_file(granule_dir_, d, raw_length);
  if (!loaded) return nullptr;
  auto g = std::make_shared<const GranuleDigests>(std::move(*loaded));
  std::lock_guard lock(mutex_);
  if (!closed_) put_bounded(granules_, d, g, kMaxGranuleSets);
  return g;
}

void BlockFileCache::record_granules(const Digest& d, uint64_t raw_length, std::vector<Digest> marks) {
  if (granule_dir_.empty() || !record_granules_) return;
  auto g = std::make_shared<const GranuleDigests>(GranuleDigests{d, raw_length, std::move(marks)});
  store_granule_file(granule_dir_, *g);
  std::lock_guard lock(mutex_);
  if (!closed_) put_bounded(granules_, d, std::move(g), kMaxGranuleSets);
}

BaseView::BaseView(std::shared_ptr<BlockFileCache> cache, uint64_t block_size, uint64_t size, std::span<const uint8_t> digests,
                   const BaseView* previous)
    : cache_(std::move(cache)),
      block_size_(block_size),
      size_(size),
      block_count_((size + block_size - 1) / block_size),
      digests_(block_count_ * kDigestSize),
      verified_((block_count_ + 63) / 64),
      // A block of one granule has its content digest: granule files would add nothing.
      granule_words_(cache_->uses_granules() && block_size > kGranuleSize ? (granule_count(block_size) + 63) / 64 : 0),
      granule_bits_(block_count_ * granule_words_) {
  if (digests.size() != block_count_ * kDigestSize)
    throw Error(ErrorCode::InvalidArgument, "base digests must be ceil(size / block size) × 32 bytes");
  for (uint64_t i = 0; i < block_count_; ++i) {
    const uint8_t* d = digests.data() + i * kDigestSize;
    if (!is_zero_digest(d)) std::memcpy(digests_.data() + i * kDigestSize, d, kDigestSize);
  }
  if (previous == nullptr || previous->block_size_ != block_size_) return;
  const bool granules = granule_words_ != 0 && previous->granule_words_ == granule_words_;
  const uint64_t common = std::min(block_count_, previous->block_count_);
  for (uint64_t i = 0; i < common; ++i) {
    // A ZERO block has no verified state or granules to carry over. Comparing it would read pages
    // of both views that nothing wrote, and some kernels back such reads with fresh pages rather
    // than the shared zero page, so a sparse disk's view would cost its whole size.
    if (is_zero_digest(digests.data() + i * kDigestSize)) continue;
    if (std::memcmp(digests_.data() + i * kDigestSize, previous->digests_.data() + i * kDigestSize, kDigestSize) != 0) continue;
    if (previous->verified(i)) verified_[i / 64].fetch_or(uint64_t{1} << (i % 64), std::memory_order_relaxed);
    // The last block may have grown or shrunk with the size: its granules then mean other bytes.
    if (granules && block_length(i) == previous->block_length(i))
      for (uint64_t w = 0; w < granule_words_; ++w)
        if (const uint64_t bits = previous->granule_bits_[i * granule_words_ + w].load(std::memory_order_acquire); bits != 0)
          granule_bits_[i * granule_words_ + w].store(bits, std::memory_order_relaxed);
  }
}

Digest BaseView::digest(uint64_t i) const {
  Digest d;
  std::memcpy(d.data(), digests_.data() + i * kDigestSize, kDigestSize);
  return d;
}

bool BaseView::zero_block(uint64_t i) const noexcept { return is_zero_digest(digests_.data() + i * kDigestSize); }

bool BaseView::all_zero(uint64_t offset, uint64_t len) const noexcept {
  if (len == 0) return true;
  for (uint64_t i = offset / block_size_, last = (offset + len - 1) / block_size_; i <= last; ++i)
    if (!zero_block(i)) return false;
  return true;
}

uint64_t BaseView::read(uint64_t offset, size_t len, uint8_t* out) const {
  uint64_t bytes_read = 0;
  each_block_piece(block_size_, offset, len, [&](uint64_t i, uint64_t x, size_t n, size_t done) {
    try {
      bytes_read += read_in_block(i, x, n, out + done);
    } catch (Error& e) {
      if (!e.block_index) e.block_index = i;
      throw;
    }
    return true;
  });
  cache_->count_read(bytes_read);
  return bytes_read;
}

bool BaseView::read_cached(uint64_t offset, size_t len, uint8_t* out) const noexcept {
  try {
    uint64_t bytes_read = 0;
    const bool filled = each_block_piece(block_size_, offset, len, [&](uint64_t i, uint64_t x, size_t n, size_t done) {
      uint8_t* dst = out + done;
      if (zero_block(i)) {
        std::memset(dst, 0, n);
        return true;
      }
      const Digest d = digest(i);
      if (copy_kept_payload(d, x, n, dst)) return true;
      // A check reads more than asked and hashes it: work for a pool thread.
      if (!verified(i) && !granules_verified(i, x, n)) return false;
      const auto block = cache_->cached_file(d);
      if (!block || !read_cached_at(block->fd.get(), dst, n, kBlockHeaderSize + x)) return false;
      bytes_read += n;
      return true;
    });
    cache_->count_read(bytes_read);
    return filled;
  } catch (...) {
    return false;  // a lock that failed: read() meets whatever it was
  }
}

void BaseView::prefetch(uint64_t i) const noexcept {
  if (i >= block_count_ || zero_block(i)) return;
  try {
    const auto block = cache_->file(digest(i));
    ::posix_fadvise(block->fd.get(), 0, 0, POSIX_FADV_WILLNEED);
  } catch (...) {
    // A missing or unopenable block: the read that needs it reports it.
  }
}

bool BaseView::read_whole_direct(uint64_t i, uint8_t* frame) const {
  if (i >= block_count_ || zero_block(i)) return false;
  const Digest d = digest(i);
  const auto block = cache_->file(d);
  const uint64_t len = block_length(i);
  const uint64_t file_size = kBlockHeaderSize + len;
  const std::vector<uint8_t> resident = resident_pages(block->fd.get(), 0, static_cast<size_t>(file_size));
  if (resident.empty() || resident_count(resident) * 2 >= resident.size()) return false;
  const UniqueFd direct = open_direct_twin(block->fd.get());
  if (!direct) return false;

  struct stat st;
  if (::fstat(block->fd.get(), &st) != 0) throw std::move(Error::system(errno, "fstat", block->path)).with_digest(d);
  size_t got = 0;
  if (!read_direct(direct.get(), frame, static_cast<size_t>(block_frame_size(len)), 0, block->path, got)) return false;
  if (got < kBlockHeaderSize) {
    cache_->forget_file(d);
    throw_block_error(ErrorCode::BlockCorrupt, d, block->path, "is corrupt: shorter than its header");
  }
  // The header, from the bytes read (a buffered read of it would pull read-ahead into the cache):
  // it is what makes "payload byte x is at 64 + x" true, and it checks the file's size.
  try {
    check_block_header(*reinterpret_cast<const uint8_t(*)[kBlockHeaderSize]>(frame), static_cast<uint64_t>(st.st_size), block->path, d, len);
  } catch (const Error&) {
    cache_->forget_file(d);
    throw;
  }
  if (got != file_size) {
    cache_->forget_file(d);
    throw_block_error(ErrorCode::BlockCorrupt, d, block->path, "is corrupt: payload truncated while reading");
  }
  if (!verified(i)) {
    if (sha256(frame + kBlockHeaderSize, len) != d) {
      cache_->forget_file(d);
      throw_block_error(ErrorCode::DigestMismatch, d, block->path, "does not match its digest: the block store is corrupt");
    }
    set_verified(i);
  }
  cache_->count_read(len);
  return true;
}

void BaseView::verify(uint64_t i) const {
  if (i >= block_count_ || zero_block(i) || verified(i)) return;
  const uint64_t len = block_length(i);
  const Digest d = digest(i);
  std::shared_ptr<const GranuleDigests> granules;
  if (granule_words_ != 0) {
    std::lock_guard lock(verify_locks_[i % verify_locks_.size()]);
    granules = cache_->granules(d, len);
  }
  if (!granules) {
    // As a first read of the block would: whole, and kept among the payloads for that read.
    thread_local AlignedBuffer whole;
    whole.reserve(static_cast<size_t>(len));
    read(i * block_size_, static_cast<size_t>(len), whole.data());
    return;
  }
  // 64 KiB at a time into one small buffer: the granules stay in the page cache for the read, and
  // a buffer of a whole block would be fresh memory, dear on a virtual machine.
  thread_local AlignedBuffer granule(kGranuleSize);
  uint64_t bytes_read = 0;
  try {
    for (uint64_t k = 0, count = granule_count(len); k < count; ++k)
      if (!granule_verified(i, k))
        bytes_read += read_granules(i, d, *granules, k * kGranuleSize, static_cast<size_t>(std::min<uint64_t>(kGranuleSize, len - k * kGranuleSize)),
                                    granule.data());
  } catch (Error& e) {
    cache_->count_read(bytes_read);
    if (!e.block_index) e.block_index = i;
    throw;
  }
  cache_->count_read(bytes_read);
}

bool BaseView::granules_verified(uint64_t i, uint64_t x, size_t len) const noexcept {
  if (granule_words_ == 0 || len == 0) return false;
  for (uint64_t k = x / kGranuleSize, last = (x + len - 1) / kGranuleSize; k <= last; ++k)
    if (!granule_verified(i, k)) return false;
  return true;
}

void BaseView::set_granule_verified(uint64_t i, uint64_t k) const noexcept {
  granule_bits_[i * granule_words_ + k / 64].fetch_or(uint64_t{1} << (k % 64), std::memory_order_acq_rel);
  for (uint64_t g = 0, count = granule_count(block_length(i)); g < count; ++g)
    if (!granule_verified(i, g)) return;
  set_verified(i);
}

bool BaseView::copy_kept_payload(const Digest& d, uint64_t x, size_t len, uint8_t* out) const {
  const auto payload = cache_->payload(d);
  if (payload) std::memcpy(out, payload->data() + x, len);
  return payload != nullptr;
}

uint64_t BaseView::read_in_block(uint64_t i, uint64_t x, size_t len, uint8_t* out) const {
  if (zero_block(i)) {
    std::memset(out, 0, len);
    return 0;
  }
  const Digest d = digest(i);
  if (copy_kept_payload(d, x, len, out)) return 0;
  if (!verified(i) && !granules_verified(i, x, len)) {
    std::shared_ptr<const GranuleDigests> granules;
    std::shared_ptr<const AlignedBuffer> verified_whole;
    std::vector<Digest> marks;
    {
      // One verification (or granule file load) per block even when several readers arrive at
      // once (a 4 MiB block read as four 1 MiB requests): the others wait and then find the
      // payload or the granule digests in the cache.
      std::lock_guard lock(verify_locks_[i % verify_locks_.size()]);
      if (copy_kept_payload(d, x, len, out)) return 0;
      if (!verified(i) && !granules_verified(i, x, len)) {
        const uint64_t block_len = block_length(i);
        if (granule_words_ != 0) granules = cache_->granules(d, block_len);
        if (!granules) {
          auto payload = std::make_shared<AlignedBuffer>();
          BlockReadOptions options;
          options.expected_length = block_len;
          if (granule_words_ != 0 && cache_->records_granules()) {
            options.marks = &marks;
            options.mark_piece = kGranuleSize;
          }
          read_block(cache_->store_dir(), d, *payload, options);
          std::memcpy(out, payload->data() + x, len);
          cache_->put_payload(d, payload);
          set_verified(i);
          verified_whole = std::move(payload);
        }
      }
    }
    // Outside the lock, so that readers waiting for this block go on meanwhile: writing the
    // granule file (its marks came with the verification), and hashing granules (two readers hashing the same one both get it right).
    if (verified_whole) {
      if (!marks.empty()) cache_->record_granules(d, block_length(i), std::move(marks));
      return block_length(i);
    }
    if (granules) return read_granules(i, d, *granules, x, len, out);
  }
  auto block = cache_->file(d);
  if (read_at(block->fd.get(), out, len, kBlockHeaderSize + x, block->path) != len) {
    cache_->forget_file(d);
    throw_block_error(ErrorCode::BlockCorrupt, d, block->path, "is corrupt: shorter than when it was verified");
  }
  return len;
}

uint64_t BaseView::read_granules(uint64_t i, const Digest& d, const GranuleDigests& g, uint64_t x, size_t len, uint8_t* out) const {
  auto block = cache_->file(d);
  const auto read_exact = [&](uint8_t* dst, size_t n, uint64_t at) {
    if (read_at(block->fd.get(), dst, n, kBlockHeaderSize + at, block->path) != n) {
      cache_->forget_file(d);
      throw_block_error(ErrorCode::BlockCorrupt, d, block->path, "is corrupt: payload truncated while reading");
    }
  };
  bool header_checked = false;
  uint64_t bytes_read = 0;
  const uint64_t end = x + len;
  for (uint64_t pos = x; pos < end;) {
    const uint64_t k = pos / kGranuleSize;
    const uint64_t g_begin = k * kGranuleSize;
    const uint64_t g_end = std::min(g.raw_length, g_begin + kGranuleSize);
    const uint64_t piece_end = std::min(end, g_end);
    uint8_t* dst = out + (pos - x);
    if (granule_verified(i, k)) {
      // A run of verified granules: one pread.
      uint64_t run_end = piece_end;
      while (run_end < end && granule_verified(i, run_end / kGranuleSize)) run_end = std::min(end, run_end + kGranuleSize);
      read_exact(dst, run_end - pos, pos);
      bytes_read += run_end - pos;
      pos = run_end;
      continue;
    }
    // The header is what makes "payload byte x is at 64 + x" true (uncompressed, this block).
    if (!header_checked) {
      try {
        check_block_header(block->fd.get(), block->path, d, g.raw_length);
      } catch (const Error&) {
        cache_->forget_file(d);
        throw;
      }
    }
    header_checked = true;
    const size_t g_len = static_cast<size_t>(g_end - g_begin);
    const bool whole = pos == g_begin && piece_end == g_end;
    thread_local AlignedBuffer bounce(kGranuleSize);
    uint8_t* buf = whole ? dst : bounce.data();
    read_exact(buf, g_len, g_begin);
    if (!granule_matches(g, k, buf, g_len)) {
      cache_->forget_file(d);
      throw_block_error(ErrorCode::DigestMismatch, d, block->path,
                        "does not match its digest: granule " + std::to_string(k) + " (bytes " + std::to_string(g_begin) + "+" +
                            std::to_string(g_len) + ") differs from when the block was verified; the block store is corrupt");
    }
    if (!whole) std::memcpy(dst, buf + (pos - g_begin), piece_end - pos);
    set_granule_verified(i, k);
    bytes_read += g_len;
    pos = piece_end;
  }
  return bytes_read;
}

}  // namespace blocksnap
