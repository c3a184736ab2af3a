// Opening disk images with the error codes an operator sees (ImageNotFound, NotAnImage, ...).
#pragma once

#include <cstdint>
#include <string>

#include "io/unique_fd.h"

namespace blocksnap {

struct ImageFile {
  UniqueFd fd;
  uint64_t size = 0;
};

// Read-only. Follows symlinks, as a qcow2 backing file name may; a disk image itself is opened
// with open_image_checked.
ImageFile open_image_for_read(const std::string& path);

// Read-only, for the disk image a job scans: never through a symlink in any component of an
// absolute path (the engine passes the real path it checked against the image roots), so a
// symlink swapped in after that check is refused (NotAnImage) instead of read.
ImageFile open_image_checked(const std::string& path);

// Read-write, for apply. `create` makes a new 0600 file and fails FileExists if the path exists;
// otherwise the file must already exist. Never goes through a symlink (the last component by
// O_NOFOLLOW, the directories of an absolute path by comparing what was opened with the path),
// so a link planted where an image is expected cannot redirect the write.
ImageFile open_image_for_write(const std::string& path, bool create);

}  // namespace blocksnap
