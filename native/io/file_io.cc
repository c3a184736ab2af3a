#include "io/file_io.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "core/error.h"

namespace blocksnap {

int open_retry(const char* path, int flags, mode_t mode) {
  int fd;
  do fd = ::open(path, flags, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

int open_cached(const char* path, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags);
  how.resolve = RESOLVE_CACHED;
  long fd;
  do fd = ::syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
  while (fd < 0 && errno == EINTR);
  return static_cast<int>(fd);
}

namespace {

// cachestat(2), Linux 6.5: how many pages of a range the page cache holds, without reading any.
// Declared here because older kernel headers lack it; the number is the same on every
// architecture.
constexpr long kSysCachestat = 451;
struct CachestatRange {
  uint64_t off;
  uint64_t len;
};
struct Cachestat {
  uint64_t nr_cache;
  uint64_t nr_dirty;
  uint64_t nr_writeback;
  uint64_t nr_evicted;
  uint64_t nr_recently_evicted;
};
std::atomic<bool> g_cachestat_works{true};

}  // namespace

bool cachestat_works() noexcept { return g_cachestat_works.load(std::memory_order_relaxed); }

std::optional<CachedPages> cached_pages(int fd, uint64_t offset, size_t len) noexcept {
  if (len == 0) return CachedPages{0, 0};
  if (!g_cachestat_works.load(std::memory_order_relaxed)) return std::nullopt;
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t first = offset / page;
  const uint64_t last = (offset + len - 1) / page;
  CachestatRange range{first * page, (last - first + 1) * page};
  Cachestat cs{};
  if (::syscall(kSysCachestat, fd, &range, &cs, 0) != 0) {
    if (errno == ENOSYS || errno == EPERM) g_cachestat_works.store(false, std::memory_order_relaxed);
    return std::nullopt;
  }
  return CachedPages{cs.nr_cache, last - first + 1};
}

bool pages_cached(int fd, uint64_t offset, size_t len) noexcept {
  const std::optional<CachedPages> c = cached_pages(fd, offset, len);
  return c && c->cached >= c->pages;
}

size_t read_at(int fd, void* buf, size_t len, uint64_t offset, const std::string& path) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd, p + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error::system(errno, "pread", path);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

namespace {
// Whether this thread's last read_cached_at was served: in a run of hits the cachestat is
// skipped (one system call of two), and the first miss after it, which pays for starting its
// disk read, turns it back on.
thread_local bool t_last_read_cached = false;
}  // namespace

bool read_cached_at(int fd, void* buf, size_t len, uint64_t offset) noexcept {
  auto* p = static_cast<uint8_t*>(buf);
  size_t done = 0;
  while (done < len) {
    if (!t_last_read_cached && !pages_cached(fd, offset + done, len - done)) return false;
    iovec v{p + done, len - done};
    // RWF_NOWAIT always: for pages evicted since the cachestat, or not asked about (EAGAIN then).
    const ssize_t n = ::preadv2(fd, &v, 1, static_cast<off_t>(offset + done), RWF_NOWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return t_last_read_cached = false;
    done += static_cast<size_t>(n);
  }
  return t_last_read_cached = true;
}

void write_at(int fd, const void* buf, size_t len, uint64_t offset, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(buf);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pwrite(fd, p + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error::system(errno, "pwrite", path);
    }
    // A zero-byte write of a non-empty request means the device will not take more.
    if (n == 0) throw Error::system(ENOSPC, "pwrite", path);
    done += static_cast<size_t>(n);
  }
}

void fsync_file(int fd, const std::string& path) {
  // No EINTR retry: after a failed fsync the kernel may already have dropped the dirty pages, so
  // a second fsync could report success for data that never reached the disk.
  if (::fsync(fd) != 0) throw Error::system(errno, "fsync", path);
}

void set_file_size(int fd, uint64_t size, const std::string& path) {
  int r;
  do r = ::ftruncate(fd, static_cast<off_t>(size));
  while (r != 0 && errno == EINTR);
  if (r != 0) throw Error::system(errno, "ftruncate", path);
}

void fsync_dir(const std::string& dir) {
  UniqueFd fd(open_retry(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw Error::system(errno, "open", dir);
  fsync_file(fd.get(), dir);
}

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace blocksnap
