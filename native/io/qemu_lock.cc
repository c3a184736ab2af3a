#include "io/qemu_lock.h"

#include <fcntl.h>

#include <cerrno>

#include "core/error.h"
#include "io/file_io.h"

namespace blocksnap {

namespace {

constexpr off_t kPermBase = 100;
constexpr off_t kSharedBase = 200;

bool locked_by_other(int fd, off_t byte, const std::string& path) {
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) throw Error::system(errno, "fcntl(F_OFD_GETLK)", path);
  return fl.l_type != F_UNLCK;
}

void read_lock(int fd, off_t start, off_t len, const std::string& path) {
  struct flock fl = {};
  fl.l_type = F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  if (::fcntl(fd, F_OFD_SETLK, &fl) != 0) throw Error::system(errno, "fcntl(F_OFD_SETLK)", path);
}

}  // namespace

const char* qemu_perm_name(unsigned bit) {
  switch (bit) {
    case 0: return "consistent read";
    case 1: return "write";
    case 2: return "write unchanged";
    case 3: return "resize";
    case 4: return "graph modification";
  }
  return "unknown";
}

std::string describe_qemu_perms(uint32_t mask) {
  std::string out;
  // Write first: it is the one that matters to an operator.
  for (unsigned bit : {1u, 0u, 2u, 3u, 4u})
    if (mask >> bit & 1) out += (out.empty() ? "" : ", ") + std::string(qemu_perm_name(bit));
  return out;
}

QemuLocks probe_qemu_locks(const std::string& path) {
  UniqueFd fd(open_retry(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) throw Error::image(errno, "open", path);
  QemuLocks r;
  for (unsigned p = 0; p < kQemuPermCount; ++p) {
    if (locked_by_other(fd.get(), kPermBase + p, path)) r.held |= 1u << p;
    if (locked_by_other(fd.get(), kSharedBase + p, path)) r.not_shared |= 1u << p;
  }
  return r;
}

void hold_qemu_locks(int fd, const std::string& path) {
  read_lock(fd, kPermBase, kQemuPermCount, path);
  read_lock(fd, kSharedBase, kQemuPermCount, path);
}

UniqueFd open_and_hold_qemu_locks(const std::string& path) {
  UniqueFd fd(open_retry(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW));
  if (!fd) throw Error::image(errno, "open", path);
  hold_qemu_locks(fd.get(), path);
  return fd;
}

}  // namespace blocksnap
