#include "core/block_writer.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/error.h"
#include "io/direct_io.h"
#include "io/file_io.h"
#include "io/unique_fd.h"

namespace blocksnap {

namespace {

constexpr size_t kSyncThreads = 8;

std::string random_suffix() {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r)) {
    // Uniqueness matters only against other writers of the same digest at the same moment, and
    // O_EXCL catches collisions anyway; an address and a clock are plenty as a fallback.
    r = reinterpret_cast<uintptr_t>(&r) ^ static_cast<uint64_t>(::time(nullptr)) ^ static_cast<uint64_t>(::getpid()) << 32;
  }
  char buf[17];
  snprintf(buf, sizeof buf, "%016" PRIx64, r);
  return buf;
}

}  // namespace

BlockWriter::BlockWriter(std::string store_dir, uint64_t keep_cached_bytes)
    : store_dir_(std::move(store_dir)), keep_cached_bytes_(keep_cached_bytes), tmp_dir_(tmp_dir_path(store_dir_)) {}

bool BlockWriter::put(const Digest& digest, const uint8_t* data, size_t len) { return put_block(digest, data, len, nullptr); }

bool BlockWriter::put_framed(const Digest& digest, uint8_t* frame, size_t len) {
  return put_block(digest, frame + kBlockHeaderSize, len, frame);
}

void BlockWriter::set_damaged(const std::vector<uint8_t>& packed) {
  damaged_.clear();
  for (size_t off = 0; off + kDigestSize <= packed.size(); off += kDigestSize) {
    Digest d;
    std::memcpy(d.data(), packed.data() + off, kDigestSize);
    damaged_.push_back(d);
  }
  std::sort(damaged_.begin(), damaged_.end());
  damaged_.erase(std::unique(damaged_.begin(), damaged_.end()), damaged_.end());
  repair_state_ = std::make_unique<std::atomic<uint8_t>[]>(damaged_.size());
  for (size_t i = 0; i < damaged_.size(); ++i) repair_state_[i].store(0, std::memory_order_relaxed);
}

long BlockWriter::damaged_index(const Digest& digest) const noexcept {
  if (damaged_.empty()) return -1;
  const auto it = std::lower_bound(damaged_.begin(), damaged_.end(), digest);
  return it != damaged_.end() && *it == digest ? static_cast<long>(it - damaged_.begin()) : -1;
}

bool BlockWriter::needs_repair(const Digest& digest) const noexcept {
  const long i = damaged_index(digest);
  return i >= 0 && repair_state_[i].load(std::memory_order_acquire) != 2;
}

bool BlockWriter::missing(const Digest& digest) const {
  struct stat st;
  if (::lstat(block_file_path(store_dir_, digest).c_str(), &st) != 0) return errno == ENOENT;
  return !S_ISREG(st.st_mode);
}

std::vector<uint8_t> BlockWriter::repaired() const {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < damaged_.size(); ++i)
    if (repair_state_[i].load(std::memory_order_acquire) == 2) out.insert(out.end(), damaged_[i].begin(), damaged_[i].end());
  return out;
}

bool BlockWriter::put_block(const Digest& digest, const uint8_t* data, size_t len, uint8_t* frame) {
  const std::string path = block_file_path(store_dir_, digest);
  // A damaged file has the right size: the first put of its digest rewrites it whatever is there
  // (a concurrent put of the same digest meanwhile finds the old file, which this one replaces
  // before the scan's drain returns, or fails the scan).
  const long damaged = damaged_index(digest);
  uint8_t expected = 0;
  if (damaged >= 0 && repair_state_[damaged].compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    try {
      std::string tmp = write_temp(digest, data, len, frame);
      try {
        publish(tmp, digest, true);
      } catch (...) {
        ::unlink(tmp.c_str());
        throw;
      }
    } catch (...) {
      repair_state_[damaged].store(0, std::memory_order_release);
      throw;
    }
    repair_state_[damaged].store(2, std::memory_order_release);
    return true;
  }
  bool replace = false;
  struct stat st;
  // lstat: a symlink under the block's name is damage even where it leads to a right-sized file.
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == kBlockHeaderSize + len) {
      // Already stored, maybe by a concurrent job that has not fsynced the directory yet: this
      // scan's snapshot will reference the block, so its directory entry must be durable too.
      touched_[fanout_index(digest)].store(true, std::memory_order_relaxed);
      return false;
    }
    // A wrong-sized file, or anything but a regular file, under a content address can only be
    // damage; the fresh copy replaces it.
    replace = true;
  } else if (errno != ENOENT) {
    throw Error::system(errno, "lstat", path);
  }

  std::string tmp = write_temp(digest, data, len, frame);
  try {
    return publish(tmp, digest, replace);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

std::string BlockWriter::write_temp(const Digest& digest, const uint8_t* data, size_t len, uint8_t* frame) {
  const std::string prefix = tmp_dir_ + "/" + to_hex(digest) + ".";
  std::string tmp;
  UniqueFd fd;
  for (int attempt = 0; !fd; ++attempt) {
    tmp = prefix + random_suffix();
    fd.reset(open_retry(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
    if (fd) break;
    if (errno == ENOENT && attempt < 2) {
      make_dir(tmp_dir_);
    } else if (!(errno == EEXIST && attempt < 8)) {
      throw Error::system(errno, "open", tmp);
    }
  }

  try {
    uint8_t header[kBlockHeaderSize];
    auto& header_out = frame != nullptr ? *reinterpret_cast<uint8_t(*)[kBlockHeaderSize]>(frame) : header;
    encode_block_header(make_block_header(digest, len), header_out);
    const uint64_t size = kBlockHeaderSize + len;
    // Past the first few blocks, keep the page cache for the VMs: not even passing through it.
    const bool keep_cached = kept_cached_bytes_.fetch_add(size, std::memory_order_relaxed) + size <= keep_cached_bytes_;
    if (frame != nullptr) {
      if (keep_cached || !write_direct_front(fd.get(), tmp, frame, size)) write_at(fd.get(), frame, size, 0, tmp);
    } else if (keep_cached || !write_staged_front(fd.get(), tmp, header, data, len)) {
      write_at(fd.get(), header, sizeof header, 0, tmp);
      write_at(fd.get(), data, len, kBlockHeaderSize, tmp);
    }
    fsync_file(fd.get(), tmp);
    // Clean now: what went through the cache (the tail of a direct write, a refused one) goes.
    if (!keep_cached) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  return tmp;
}

bool BlockWriter::write_direct_front(int fd, const std::string& tmp, const uint8_t* file, size_t size) {
  const size_t front = size / kDirectAlignment * kDirectAlignment;
  if (front == 0 || !direct_ok_.load(std::memory_order_relaxed)) return false;
  if (!write_direct(fd, file, front, 0, tmp)) {
    direct_ok_.store(false, std::memory_order_relaxed);  // this filesystem refuses O_DIRECT
    return false;
  }
  write_at(fd, file + front, size - front, front, tmp);
  return true;
}

bool BlockWriter::write_staged_front(int fd, const std::string& tmp, const uint8_t* header, const uint8_t* data, size_t len) {
  const size_t front = (kBlockHeaderSize + len) / kDirectAlignment * kDirectAlignment;
  if (front == 0 || !direct_ok_.load(std::memory_order_relaxed)) return false;
  // The header puts the payload 64 bytes off alignment: the aligned front is staged in a
  // recycled buffer (a user-space copy into memory in use, far cheaper than the kernel's copy
  // into fresh page-cache pages), the bytes past it follow through the cache.
  AlignedBuffer staging(front);
  std::memcpy(staging.data(), header, kBlockHeaderSize);
  std::memcpy(staging.data() + kBlockHeaderSize, data, front - kBlockHeaderSize);
  if (!write_direct_front(fd, tmp, staging.data(), front)) return false;
  const size_t done = front - kBlockHeaderSize;
  write_at(fd, data + done, len - done, front, tmp);
  return true;
}

bool BlockWriter::publish(const std::string& tmp, const Digest& digest, bool replace) {
  const std::string path = block_file_path(store_dir_, digest);
  const size_t fanout = fanout_index(digest);
  for (int attempt = 0;; ++attempt) {
    // RENAME_NOREPLACE makes "create if absent" atomic, so when two jobs store the same new
    // block concurrently exactly one of them counts it as written.
    int r = ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), replace ? 0 : RENAME_NOREPLACE);
    if (r != 0 && !replace && (errno == EINVAL || errno == ENOSYS)) {
      r = ::rename(tmp.c_str(), path.c_str());  // filesystem without RENAME_NOREPLACE
    }
    if (r == 0) {
      touched_[fanout].store(true, std::memory_order_relaxed);
      return true;
    }
    if (errno == EEXIST) {
      ::unlink(tmp.c_str());
      touched_[fanout].store(true, std::memory_order_relaxed);
      return false;
    }
    if (errno == ENOENT && attempt == 0) {
      make_dir(fanout_dir_path(store_dir_, digest));
      continue;
    }
    // rename(2) replaces a symlink, a FIFO or any other non-directory itself, never following
    // it; only a directory under the block's name refuses a file.
    if (replace && errno == EISDIR && attempt < 2) {
      remove_directory_in_way(path, digest);
      continue;
    }
    throw Error::system(errno, "rename", path);
  }
}

void BlockWriter::remove_directory_in_way(const std::string& path, const Digest& digest) {
  if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return;
  if (errno != ENOTEMPTY && errno != EEXIST) throw std::move(Error::system(errno, "rmdir", path)).with_digest(digest);
  // What is in a directory nobody should have made there is not blocksnap's to delete.
  Error e(ErrorCode::BlockCorrupt, "block " + to_hex(digest) + " cannot be written again: " + path +
                                       " is a directory that is not empty; remove it by hand, then take the snapshot again");
  e.path = path;
  e.digest = digest;
  throw e;
}

void BlockWriter::make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0) {
    // The new directory's entry lives in the store directory: made durable by sync(), as for
    // every fan-out directory touched.
    store_dir_touched_.store(true, std::memory_order_relaxed);
  } else if (errno != EEXIST) {
    throw Error::system(errno, "mkdir", dir);
  }
}

void BlockWriter::sync() {
  std::vector<std::string> dirs;
  for (size_t i = 0; i < touched_.size(); ++i)
    if (touched_[i].exchange(false, std::memory_order_relaxed)) dirs.push_back(fanout_dir_path(store_dir_, i));
  // A fan-out directory this scan did not create may be another job's, made and not yet fsynced
  // in the store directory (that job may yet fail before it does): its entry is made durable here
  // too, once per scan, whoever created it.
  if (store_dir_touched_.exchange(false, std::memory_order_relaxed) || !dirs.empty()) dirs.push_back(store_dir_);
  // One at a time, each directory fsync waits for its own journal commit; several in flight
  // share commits.
  const unsigned workers = static_cast<unsigned>(std::min<size_t>(kSyncThreads, dirs.size()));
  std::atomic<size_t> next{0};
  std::mutex failure_mutex;
  std::exception_ptr failure;
  const auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < dirs.size();) {
      try {
        fsync_dir(dirs[i]);
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    }
  };
  std::vector<std::thread> threads;
  try {
    for (unsigned t = 1; t < workers; ++t) threads.emplace_back(work);
  } catch (const std::system_error&) {
    // No thread to be had: this one does the rest alone.
  }
  work();
  for (std::thread& t : threads) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace blocksnap
