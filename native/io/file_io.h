// Positional I/O that finishes the job: pread/pwrite return short counts on signals, on some
// filesystems for large requests, and at end of file; callers here want all bytes or an error.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "io/unique_fd.h"

namespace blocksnap {

// open(2) retried on EINTR (possible on NFS and FUSE). Returns -1 with errno set on failure.
int open_retry(const char* path, int flags, mode_t mode = 0);

// Opens an existing file only if the path resolves from the kernel's caches (openat2 with
// RESOLVE_CACHED), so that it never waits for a disk; -1 with errno EAGAIN when it would, or
// ENOSYS where the kernel has no openat2.
int open_cached(const char* path, int flags);

// Reads up to `len` bytes at `offset`. Returns fewer only at end of file. Throws IOError.
size_t read_at(int fd, void* buf, size_t len, uint64_t offset, const std::string& path);

// Reads all `len` bytes at `offset` only if the page cache holds them, never waiting for a disk:
// for a thread that must stay responsive (the JS thread), which serves what the cache holds and
// hands the rest to a pool thread. False when it would wait, on a short read and on any error:
// the caller does the same read again with read_at where it may wait, which reports the error.
// It asks cachestat(2) first because a RWF_NOWAIT read that misses has already started the disk
// read on the calling thread, which costs that thread about as much as the read it avoided;
// except right after a read of this thread's was served, when the odds favour one system call
// instead of two (its first miss then turns the question back on).
bool read_cached_at(int fd, void* buf, size_t len, uint64_t offset) noexcept;

// Whether every page of [offset, offset + len) of `fd` is in the page cache (cachestat(2), Linux
// 6.5), found without reading any. False where cachestat is missing (older kernels, a seccomp
// filter; cachestat_works() then turns false): there read_cached_at serves nothing.
bool pages_cached(int fd, uint64_t offset, size_t len) noexcept;
bool cachestat_works() noexcept;

// How many pages of [offset, offset + len) (widened to whole pages) the page cache holds, and how
// many the range spans; nullopt where cachestat is missing or failed.
struct CachedPages {
  uint64_t cached;
  uint64_t pages;
};
std::optional<CachedPages> cached_pages(int fd, uint64_t offset, size_t len) noexcept;

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
