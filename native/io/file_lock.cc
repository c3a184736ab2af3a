#include "io/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "core/error.h"
#include "io/file_io.h"

namespace blocksnap {

namespace {

// The pid a holder wrote into its lock file, for the message only ("" if none can be read).
std::string holder_pid(int fd) {
  char holder[32] = {};
  const ssize_t n = ::pread(fd, holder, sizeof holder - 1, 0);
  std::string who = n > 0 ? std::string(holder, static_cast<size_t>(n)) : std::string();
  while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
  return who;
}

Error locked_error(const std::string& path, const std::string& who, int err, const char* syscall) {
  Error e(ErrorCode::DataDirLocked, path + " is locked by another blocksnap process" + (who.empty() ? "" : " (pid " + who + ")"));
  e.sys_errno = err;
  e.syscall = syscall;
  e.path = path;
  return e;
}

}  // namespace

UniqueFd lock_directory_exclusive(const std::string& dir, const std::string& holder_file) {
  UniqueFd fd(open_retry(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw Error::system(errno, "open", dir);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return fd;
  const int err = errno;
  // A filesystem without flock on directories (NFS emulates it with byte-range locks, which a
  // read-only descriptor cannot take) is left to the lock file alone.
  if (err == EBADF || err == ENOLCK || err == EINVAL || err == EOPNOTSUPP) return UniqueFd();
  if (err != EWOULDBLOCK) throw Error::system(err, "flock", dir);
  UniqueFd holder(open_retry(holder_file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  throw locked_error(dir, holder ? holder_pid(holder.get()) : std::string(), err, "flock");
}

UniqueFd lock_file_exclusive(const std::string& path) {
  UniqueFd fd(open_retry(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw Error::system(errno, "open", path);

  struct flock lock = {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file, however it grows
  if (::fcntl(fd.get(), F_OFD_SETLK, &lock) != 0) {
    // Kept before holder_pid's read, which may set errno, and which the call's arguments may run
    // in either order with.
    const int err = errno;
    if (err != EAGAIN && err != EACCES) throw Error::system(err, "fcntl(F_OFD_SETLK)", path);
    // OFD locks do not report their owner; the pid the holder wrote is the best hint we have.
    throw locked_error(path, holder_pid(fd.get()), err, "fcntl(F_OFD_SETLK)");
  }

  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0) throw Error::system(errno, "ftruncate", path);
  write_at(fd.get(), pid.data(), pid.size(), 0, path);
  return fd;
}

}  // namespace blocksnap
