#include "io/punch_hole.h"

#include <fcntl.h>

#include <cerrno>

#include "core/error.h"

namespace blocksnap {

bool punch_hole(int fd, uint64_t offset, uint64_t len, const std::string& path) {
  int r;
  do r = ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                     static_cast<off_t>(len));
  while (r != 0 && errno == EINTR);
  if (r == 0) return true;
  if (errno == EOPNOTSUPP) return false;
  throw Error::system(errno, "fallocate(PUNCH_HOLE)", path);
}

}  // namespace blocksnap
