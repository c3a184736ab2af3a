// Positional I/O that finishes the job: pread/pwrite return short counts on signals, on some
// filesystems for large requests, and at end of file; callers here want all bytes or an error.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "io/unique_fd.h"

namespace blocksnap {

// open(2) retried on EINTR (possible on NFS and FUSE). Returns -1 with errno set on failure.
int open_retry(const char* path, int flags, mode_t mode = 0);

// Opens an existing file only if the path resolves from the kernel's caches (openat2 with
// RESOLVE_CACHED), so that it never waits for a disk; -1 with errno EAGAIN when it would, or
// ENOSYS where the kernel has no openat2.
int open_cached(const char* path, int flags);

// Reads up to `len` bytes at `offset`. Returns fewer only at end of file. Throws IOError, or
// WouldBlock inside a NoWaitReads scope.
size_t read_at(int fd, void* buf, size_t len, uint64_t offset, const std::string& path);

// Whether every page of [offset, offset + len) of `fd` is in the page cache (cachestat(2), Linux
// 6.5), found without reading any. A NoWaitReads read asks first because a RWF_NOWAIT read that
// misses has already started the disk read on the calling thread, which costs that thread about
// as much as the read it avoided. False where cachestat is missing (older kernels, a seccomp
// filter; cachestat_works() then turns false): there no read is served without waiting.
bool pages_cached(int fd, uint64_t offset, size_t len) noexcept;
bool cachestat_works() noexcept;

// Thrown by read_at inside a NoWaitReads scope when bytes are not in the page cache. Not an
// Error: it never reaches a user, the caller does the same read again where it may wait.
struct WouldBlock {};

// While one is alive on a thread, read_at on that thread never waits for a disk: it reads with
// RWF_NOWAIT and throws WouldBlock instead. For reads on a thread that must stay responsive
// (the JS thread), which serve what the page cache holds and hand the rest to a pool thread.
class NoWaitReads {
 public:
  NoWaitReads() noexcept;
  ~NoWaitReads();
  NoWaitReads(const NoWaitReads&) = delete;
  NoWaitReads& operator=(const NoWaitReads&) = delete;
  static bool active() noexcept;

 private:
  bool outer_;
};

// Writes all `len` bytes at `offset`. Throws NoSpace / IOError.
void write_at(int fd, const void* buf, size_t len, uint64_t offset, const std::string& path);

void fsync_file(int fd, const std::string& path);

// ftruncate(2) retried on EINTR. Throws NoSpace / IOError.
void set_file_size(int fd, uint64_t size, const std::string& path);

// Makes entries created, renamed or removed in `dir` durable.
void fsync_dir(const std::string& dir);

// The directory part of `path` ("." when there is none).
std::string parent_dir(const std::string& path);

}  // namespace blocksnap
