#include "core/image_file.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/error.h"
#include "io/file_io.h"

namespace blocksnap {

namespace {

ImageFile finish_open(UniqueFd fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw Error::system(errno, "fstat", path);
  if (!S_ISREG(st.st_mode)) {
    Error e(ErrorCode::NotAnImage, path + " is not a regular file");
    e.path = path;
    throw e;
  }
  // O_NONBLOCK was only there so that opening a FIFO cannot hang; regular file I/O ignores it,
  // but clear it so nothing downstream ever sees EAGAIN semantics.
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return ImageFile{std::move(fd), static_cast<uint64_t>(st.st_size)};
}

// A file this open created where it was not meant to be is removed again, but only if the
// directory entry still names that very inode: whoever controls that directory may have put
// something else there by now, and that is not ours to delete.
void remove_created(int fd, const std::string& real) {
  const size_t slash = real.rfind('/');
  if (slash == std::string::npos) return;
  UniqueFd dir(open_retry(slash == 0 ? "/" : real.substr(0, slash).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return;
  struct stat mine, entry;
  if (::fstat(fd, &mine) != 0) return;
  const std::string base = real.substr(slash + 1);
  if (::fstatat(dir.get(), base.c_str(), &entry, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (entry.st_dev == mine.st_dev && entry.st_ino == mine.st_ino) ::unlinkat(dir.get(), base.c_str(), 0);
}

// The engine hands native code real paths, checked to lie inside an image root. A directory of
// that path swapped for a symlink between the check and the open would send the read or write
// outside every root (a snapshot of a file the client may not read, a rollback onto one it may
// not write), and O_NOFOLLOW guards the last component only. So compare what the kernel opened
// with the path that was checked. Relative paths (tools, tests) have no checked form to compare.
void require_checked_path(int fd, const std::string& path, bool created) {
  if (path.empty() || path[0] != '/') return;
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char real[PATH_MAX + 1];
  const ssize_t n = ::readlink(link, real, PATH_MAX);
  if (n < 0) return;  // no /proc: nothing to compare with
  if (static_cast<size_t>(n) == path.size() && path.compare(0, path.size(), real, static_cast<size_t>(n)) == 0) return;
  if (created) remove_created(fd, std::string(real, static_cast<size_t>(n)));
  Error e(ErrorCode::NotAnImage, path + " led to " + std::string(real, static_cast<size_t>(n)) +
                                     " when opened (a symlink was swapped into the path after it was checked); refusing it");
  e.path = path;
  throw e;
}

}  // namespace

ImageFile open_image_checked(const std::string& path) {
  UniqueFd fd(open_retry(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd) throw Error::image(errno, "open", path);
  require_checked_path(fd.get(), path, false);
  return finish_open(std::move(fd), path);
}

ImageFile open_image_for_read(const std::string& path) {
  UniqueFd fd(open_retry(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) throw Error::image(errno, "open", path);
  return finish_open(std::move(fd), path);
}

ImageFile open_image_for_write(const std::string& path, bool create) {
  int flags = O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
  if (create) flags |= O_CREAT | O_EXCL;
  UniqueFd fd(open_retry(path.c_str(), flags, 0600));
  if (!fd) throw Error::image(errno, "open", path);
  require_checked_path(fd.get(), path, create);
  return finish_open(std::move(fd), path);
}

}  // namespace blocksnap
