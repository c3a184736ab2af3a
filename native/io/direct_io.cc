#include "io/direct_io.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <optional>
#include <string>

#include "core/error.h"
#include "io/file_io.h"

namespace blocksnap {

namespace {

// O_DIRECT for the life of one write; the flag is per open file description, so it must not leak
// into the caller's later (unaligned) writes.
class DirectFlag {
 public:
  explicit DirectFlag(int fd) : fd_(fd), flags_(::fcntl(fd, F_GETFL)) {
    on_ = flags_ >= 0 && ::fcntl(fd, F_SETFL, flags_ | O_DIRECT) == 0;
  }
  ~DirectFlag() {
    if (on_) ::fcntl(fd_, F_SETFL, flags_);
  }
  DirectFlag(const DirectFlag&) = delete;
  DirectFlag& operator=(const DirectFlag&) = delete;
  bool on() const noexcept { return on_; }

 private:
  int fd_;
  int flags_;
  bool on_ = false;
};

}  // namespace

bool direct_reads_available() {
  static const bool available = [] {
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string line;
    return std::getline(f, line) && line.find("[never]") == std::string::npos;
  }();
  return available;
}

UniqueFd open_direct_twin(int fd, bool writable) {
  if (!direct_reads_available()) return UniqueFd(-1);
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  return UniqueFd(open_retry(link, (writable ? O_WRONLY : O_RDONLY) | O_DIRECT | O_CLOEXEC));
}

bool read_direct(int fd, uint8_t* buf, size_t len, uint64_t offset, const std::string& path, size_t& got) {
  if (!aligned_for_direct(buf, len, offset)) return false;
  got = 0;
  while (got < len) {
    const ssize_t n = ::pread(fd, buf + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL) return false;
      throw Error::system(errno, "pread", path);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
    // A short count is the end of the file; what follows it is no longer aligned.
    if (got % kDirectAlignment != 0) break;
  }
  return true;
}

bool write_direct(int fd, const uint8_t* buf, size_t len, uint64_t offset, const std::string& path, int twin) {
  if (!aligned_for_direct(buf, len, offset)) return false;
  size_t done = 0;
  {
    std::optional<DirectFlag> flag;
    if (twin < 0 && !flag.emplace(fd).on()) return false;
    const int out = twin < 0 ? fd : twin;
    while (done < len) {
      const ssize_t n = ::pwrite(out, buf + done, len - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EINVAL && done == 0) return false;
        throw Error::system(errno, "pwrite", path);
      }
      if (n == 0) throw Error::system(ENOSPC, "pwrite", path);
      done += static_cast<size_t>(n);
      // A short count off the alignment (a full disk, a signal): the rest goes through the cache.
      if (done % kDirectAlignment != 0) break;
    }
  }
  if (done < len) write_at(fd, buf + done, len - done, offset + done, path);
  return true;
}

}  // namespace blocksnap
