// The process's open file descriptors, as /proc/self/fd lists them (the listing's own included).
#pragma once

#include <dirent.h>

#include <cstddef>

namespace testing_support {

inline size_t open_fds() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

}  // namespace testing_support
