#include "io/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "core/error.h"

namespace blocksnap {

int open_retry(const char* path, int flags, mode_t mode) {
  int fd;
  do fd = ::open(path, flags, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

size_t read_at(int fd, void* buf, size_t len, uint64_t offset, const std::string& path) {
  auto* p = static_cast<uint8_t*>(buf);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, p + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error::system(errno, "pread", path);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
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
