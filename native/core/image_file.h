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

// Read-only, for scanning. Follows symlinks: reading through one is harmless.
ImageFile open_image_for_read(const std::string& path);

// Read-write, for apply. `create` makes a new 0600 file and fails FileExists if the path exists;
// otherwise the file must already exist. Never follows a symlink in the last component, so a
// link planted where an image is expected cannot redirect the write.
ImageFile open_image_for_write(const std::string& path, bool create);

}  // namespace blocksnap
