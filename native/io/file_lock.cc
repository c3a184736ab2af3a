#include "io/file_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "core/error.h"
#include "io/file_io.h"

namespace blocksnap {

UniqueFd lock_file_exclusive(const std::string& path) {
  UniqueFd fd(open_retry(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw Error::system(errno, "open", path);

  struct flock lock = {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file, however it grows
  if (::fcntl(fd.get(), F_OFD_SETLK, &lock) != 0) {
    if (errno != EAGAIN && errno != EACCES) throw Error::system(errno, "fcntl(F_OFD_SETLK)", path);
    char holder[32] = {};
    // OFD locks do not report their owner; the pid the holder wrote is the best hint we have.
    ssize_t n = ::pread(fd.get(), holder, sizeof holder - 1, 0);
    std::string who = n > 0 ? std::string(holder, static_cast<size_t>(n)) : std::string();
    while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
    Error e(ErrorCode::DataDirLocked, path + " is locked by another blocksnap process" + (who.empty() ? "" : " (pid " + who + ")"));
    e.sys_errno = errno;
    e.syscall = "fcntl(F_OFD_SETLK)";
    e.path = path;
    throw e;
  }

  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0) throw Error::system(errno, "ftruncate", path);
  write_at(fd.get(), pid.data(), pid.size(), 0, path);
  return fd;
}

}  // namespace blocksnap
