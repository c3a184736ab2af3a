#include "io/open_regular.h"

#include <sys/stat.h>

#include <cerrno>

namespace blocksnap {

bool opened_regular(int fd) noexcept {
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  clear_nonblock(fd);
  return true;
}

void clear_nonblock(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK) != 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

bool refused_as_not_regular(const char* path, int err) noexcept {
  if (err != ELOOP && err != ENXIO) return false;
  struct stat st;
  return ::lstat(path, &st) == 0 && !S_ISREG(st.st_mode);
}

}  // namespace blocksnap
