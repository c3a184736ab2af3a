#include "core/image_file.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

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
  ImageFile image;
  image.fd = std::move(fd);
  image.size = static_cast<uint64_t>(st.st_size);
  return image;
}

// The engine hands native code real paths, checked to lie inside an image root. A directory of
// that path swapped for a symlink between the check and the open would send the read or write
// outside every root (a snapshot of a file the client may not read, a rollback onto one it may
// not write), and O_NOFOLLOW guards the last component only. So compare what the kernel opened
// with the path that was checked. Relative paths (tools, tests) have no checked form to compare.
void require_checked_path(int fd, const std::string& path) {
  if (path.empty() || path[0] != '/') return;
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char real[PATH_MAX + 1];
  const ssize_t n = ::readlink(link, real, PATH_MAX);
  if (n < 0) return;  // no /proc: nothing to compare with
  if (static_cast<size_t>(n) == path.size() && path.compare(0, path.size(), real, static_cast<size_t>(n)) == 0) return;
  Error e(ErrorCode::NotAnImage, path + " led to " + std::string(real, static_cast<size_t>(n)) +
                                     " when opened (a symlink was swapped into the path after it was checked); refusing it");
  e.path = path;
  throw e;
}

}  // namespace

namespace {

ImageFile open_in(int dir_fd, const std::string& name, const std::string& path, int access) {
  int raw;
  do raw = ::openat(dir_fd, name.c_str(), access | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  while (raw < 0 && errno == EINTR);
  UniqueFd fd(raw);
  if (!fd) {
    const int err = errno;
    if (err != ELOOP && err != ENXIO) throw Error::image(err, "open", path);
    // ENXIO: a socket, which cannot be opened at all.
    Error e(ErrorCode::NotAnImage, err == ELOOP ? path + " is a symlink (a symlink was swapped into the path after it was checked); refusing it"
                                                : path + " is not a regular file");
    e.path = path;
    e.sys_errno = err;
    e.syscall = "openat";
    throw e;
  }
  return finish_open(std::move(fd), path);
}

// An existing file at a checked path, through its directory opened without following a symlink:
// O_NOFOLLOW alone guards the last component, and the comparison with /proc/self/fd that would
// guard the others is impossible where /proc is not mounted.
ImageFile open_existing_checked(const std::string& path, int access, const std::optional<FileIdentity>& expected) {
  const size_t slash = path.rfind('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") throw Error(ErrorCode::InvalidArgument, path + " does not name a file");
  const UniqueFd dir = open_image_dir(parent_dir(path));
  ImageFile image = open_in(dir.get(), name, path, access);
  require_identity(image.fd.get(), expected, path);
  return image;
}

}  // namespace

void require_identity(int fd, const std::optional<FileIdentity>& expected, const std::string& path) {
  if (!expected) return;
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error::system(errno, "fstat", path);
  if (static_cast<uint64_t>(st.st_dev) == expected->dev && static_cast<uint64_t>(st.st_ino) == expected->ino) return;
  Error e(ErrorCode::ImageReplaced, path + " is no longer the file whose rights were checked for this job (another file or directory was renamed " +
                                        "over it since); refusing to open it");
  e.path = path;
  throw e;
}

ImageFile open_image_checked(const std::string& path, const std::optional<FileIdentity>& expected) {
  return open_existing_checked(path, O_RDONLY, expected);
}

ImageFile open_image_for_read(const std::string& path) {
  UniqueFd fd(open_retry(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) throw Error::image(errno, "open", path);
  return finish_open(std::move(fd), path);
}

ImageFile open_image_in(int dir_fd, const std::string& name, const std::string& path) {
  return open_in(dir_fd, name, path, O_RDONLY);
}

UniqueFd open_image_dir(const std::string& dir) {
  const int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  if (dir.empty() || dir[0] != '/') {
    UniqueFd fd(open_retry(dir.empty() ? "." : dir.c_str(), flags));
    if (!fd) throw Error::image(errno, "open", dir);
    return fd;
  }
  open_how how{};
  how.flags = static_cast<uint64_t>(flags);
  how.resolve = RESOLVE_NO_SYMLINKS;
  long r;
  do r = ::syscall(SYS_openat2, AT_FDCWD, dir.c_str(), &how, sizeof how);
  while (r < 0 && errno == EINTR);
  UniqueFd fd(static_cast<int>(r));
  if (!fd && (errno == ENOSYS || errno == EPERM)) {  // no openat2, or a seccomp filter refusing it
    fd.reset(open_retry(dir.c_str(), flags | O_NOFOLLOW));
    if (fd) require_checked_path(fd.get(), dir);
  }
  if (!fd) {
    if (errno != ELOOP) throw Error::image(errno, "open", dir);
    Error e(ErrorCode::NotAnImage, dir + " leads through a symlink (a symlink was swapped into the path after it was checked); refusing it");
    e.path = dir;
    e.sys_errno = ELOOP;
    e.syscall = "openat2";
    throw e;
  }
  return fd;
}

namespace {

// O_TMPFILE unless the environment asks for named partial files (tests of the fallback).
bool tmpfile_wanted() {
  const char* v = std::getenv("BLOCKSNAP_NO_TMPFILE");
  return v == nullptr || *v == '\0' || std::strcmp(v, "0") == 0;
}

// Whether link_nameless can give `fd` a name later: better known before an image is written into
// it than after. Linking by descriptor (AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH, or on newer
// kernels the credentials that opened the file; the kernel checks that before it looks at the
// new name, so a link to "." (which exists, and never can be made) answers EEXIST exactly when
// linking by descriptor is allowed, and creates nothing. Otherwise the file is linked through
// /proc/self/fd, which must then lead to it.
bool linkable(int fd, int dir_fd) {
  if (::linkat(fd, "", dir_fd, ".", AT_EMPTY_PATH) != 0 && errno == EEXIST) return true;
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  struct stat mine, seen;
  return ::fstat(fd, &mine) == 0 && ::stat(link, &seen) == 0 && mine.st_dev == seen.st_dev && mine.st_ino == seen.st_ino;
}

}  // namespace

UniqueFd create_in(int dir_fd, const std::string& name, const std::string& path, bool& nameless) {
  nameless = false;
  if (tmpfile_wanted()) {
    // A name already taken fails now, as the named create below would, rather than at the link
    // after the whole image was written.
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) throw Error::image(EEXIST, "open", path);
    int raw;
    do raw = ::openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    while (raw < 0 && errno == EINTR);
    UniqueFd fd(raw);
    if (fd && linkable(fd.get(), dir_fd)) {
      nameless = true;
      return fd;
    }
    // The filesystem has no O_TMPFILE (EOPNOTSUPP; EISDIR or EINVAL from kernels or filesystems
    // that do not know the flag), or the file could not be named later: a named file, as before.
    if (!fd && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) throw Error::image(errno, "open", path);
  }
  int raw;
  do raw = ::openat(dir_fd, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  while (raw < 0 && errno == EINTR);
  if (raw < 0) throw Error::image(errno, "open", path);
  return UniqueFd(raw);
}

void link_nameless(int fd, int dir_fd, const std::string& name, const std::string& path) {
  if (::linkat(fd, "", dir_fd, name.c_str(), AT_EMPTY_PATH) == 0) return;
  int err = errno;
  // ENOENT: not allowed to link by descriptor (or the directory is gone, which /proc then says
  // again). /proc/self/fd leads to the open file itself, nameless or not.
  if (err == ENOENT) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    if (::linkat(AT_FDCWD, link, dir_fd, name.c_str(), AT_SYMLINK_FOLLOW) == 0) return;
    err = errno;
  }
  struct stat dir;
  if (err == ENOENT && ::fstat(dir_fd, &dir) == 0 && dir.st_nlink == 0) {
    const std::string where = parent_dir(path);
    Error e(ErrorCode::ImageNotFound, "directory " + where + " was removed while the job ran; the result was discarded");
    e.path = path;
    e.sys_errno = err;
    e.syscall = "linkat";
    throw e;
  }
  throw Error::image(err, "link", path);
}

void name_created(ImageFile& image, const std::string& path) {
  if (!image.nameless) return;
  link_nameless(image.fd.get(), image.dir.get(), image.name, path);
  image.nameless = false;
}

ImageFile open_image_for_write(const std::string& path, bool create, int dir_fd, const std::optional<FileOwner>& owner,
                               const std::optional<FileIdentity>& expected) {
  if (!create) return open_existing_checked(path, O_RDWR, expected);
  const size_t slash = path.rfind('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") throw Error(ErrorCode::InvalidArgument, path + " does not name a file");
  UniqueFd dir;
  if (dir_fd >= 0) {
    dir.reset(::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0));
    if (!dir) throw Error::system(errno, "fcntl", path);
  } else {
    dir = open_image_dir(slash == std::string::npos ? "." : parent_dir(path));
  }
  bool nameless = false;
  UniqueFd fd = create_in(dir.get(), name, path, nameless);
  if (owner && ::fchown(fd.get(), owner->uid, owner->gid) != 0) {
    const int err = errno;
    // Created under its name (no O_TMPFILE): it must not stay behind, nor under the daemon's owner.
    if (!nameless) ::unlinkat(dir.get(), name.c_str(), 0);
    throw Error::system(err, "fchown", path);
  }
  ImageFile image = finish_open(std::move(fd), path);
  image.dir = std::move(dir);
  image.name = std::move(name);
  image.nameless = nameless;
  return image;
}

void sync_created_entry(const ImageFile& image, const std::string& path) {
  fsync_file(image.dir.get(), parent_dir(path));
}

void remove_created(const ImageFile& image) noexcept {
  if (image.nameless || !image.dir || !image.fd) return;
  struct stat mine, entry;
  if (::fstat(image.fd.get(), &mine) != 0) return;
  if (::fstatat(image.dir.get(), image.name.c_str(), &entry, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (entry.st_dev == mine.st_dev && entry.st_ino == mine.st_ino) ::unlinkat(image.dir.get(), image.name.c_str(), 0);
}

}  // namespace blocksnap
