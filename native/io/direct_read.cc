#include "io/direct_read.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "core/error.h"
#include "io/file_io.h"

namespace blocksnap {

namespace {

// Both the file offset and the buffer: 4 KiB satisfies every filesystem's O_DIRECT alignment.
constexpr uint64_t kDirectAlign = 4096;

bool huge_pages_available() {
  static const bool available = [] {
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string line;
    return std::getline(f, line) && line.find("[never]") == std::string::npos;
  }();
  return available;
}

}  // namespace

UniqueFd open_direct_twin(int fd) {
  if (!huge_pages_available()) return UniqueFd(-1);
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  return UniqueFd(open_retry(link, O_RDONLY | O_DIRECT | O_CLOEXEC));
}

bool read_direct(int fd, uint8_t* buf, size_t len, uint64_t offset, const std::string& path, size_t& got) {
  if (offset % kDirectAlign != 0 || len % kDirectAlign != 0 || reinterpret_cast<uintptr_t>(buf) % kDirectAlign != 0) return false;
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
    if (got % kDirectAlign != 0) break;
  }
  return true;
}

}  // namespace blocksnap
