#include "io/inode_flags.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cerrno>

#include "core/error.h"
#include "io/unique_fd.h"

namespace blocksnap {

InodeFlags inode_flags(const std::string& path) {
  // O_NONBLOCK: a FIFO put where the image was must not hang the check.
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd) throw Error::system(errno, "open", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw Error::system(errno, "fstat", path);
  InodeFlags out;
  // On a device the ioctl would go to its driver, whose meaning for the number is its own.
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return out;
  int flags = 0;
  if (::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) != 0) {
    if (errno == ENOTTY || errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS) return out;
    throw Error::system(errno, "ioctl(FS_IOC_GETFLAGS)", path);
  }
  out.append_only = (flags & FS_APPEND_FL) != 0;
  out.immutable = (flags & FS_IMMUTABLE_FL) != 0;
  return out;
}

}  // namespace blocksnap
