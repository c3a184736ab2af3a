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

// Reads up to `len` bytes at `offset`. Returns fewer only at end of file. Throws IOError.
size_t read_at(int fd, void* buf, size_t len, uint64_t offset, const std::string& path);

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
