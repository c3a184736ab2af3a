#pragma once

#include <cstdlib>

namespace testing_support {

// Files a job creates get names from the start for as long as it lives, as where the filesystem
// has no O_TMPFILE (create_in in core/image_file.h).
struct NoTmpfile {
  NoTmpfile() { ::setenv("BLOCKSNAP_NO_TMPFILE", "1", 1); }
  ~NoTmpfile() { ::unsetenv("BLOCKSNAP_NO_TMPFILE"); }
  NoTmpfile(const NoTmpfile&) = delete;
  NoTmpfile& operator=(const NoTmpfile&) = delete;
};

}  // namespace testing_support
