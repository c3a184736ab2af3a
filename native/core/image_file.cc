#include "core/image_file.h"

#include <fcntl.h>
#include <sys/stat.h>

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

}  // namespace

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
  return finish_open(std::move(fd), path);
}

}  // namespace blocksnap
