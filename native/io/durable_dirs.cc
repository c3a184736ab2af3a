#include "io/durable_dirs.h"

#include <sys/stat.h>

#include <cerrno>
#include <vector>

#include "core/error.h"
#include "io/file_io.h"

namespace blocksnap {

namespace {

// Creates the missing levels of `dir`, outermost first, appending each to `created`. A second
// ENOENT for a level whose parent exists is the answer (a parent that takes no new entry, as
// under /proc), not a reason to try again.
void make_levels(const std::string& dir, mode_t mode, std::vector<std::string>& created) {
  for (int attempt = 0;; ++attempt) {
    if (::mkdir(dir.c_str(), mode) == 0) {
      created.push_back(dir);
      return;
    }
    const int err = errno;
    struct stat st;
    if (err == EEXIST && ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return;
    const std::string parent = parent_dir(dir);
    if (err != ENOENT || attempt > 0 || parent == dir) throw Error::system(err == EEXIST ? ENOTDIR : err, "mkdir", dir);
    make_levels(parent, mode, created);
  }
}

}  // namespace

void make_dirs_durably(const std::string& dir, mode_t mode) {
  std::vector<std::string> created;
  make_levels(dir, mode, created);
  // The deepest level that existed already is synced in its parent as well: another job may have
  // just made it without syncing its name yet, and what the caller commits names it too.
  fsync_dir(parent_dir(created.empty() ? dir : parent_dir(created.front())));
  for (const std::string& level : created) fsync_dir(parent_dir(level));
}

}  // namespace blocksnap
