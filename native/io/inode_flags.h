// The inode flags (chattr) that keep even root from changing a file the way a rollback does: an
// append-only file opens for writing only with O_APPEND, so a raw rollback cannot rewrite it in
// place, and neither an append-only nor an immutable file, nor any entry of such a directory, can
// be replaced by rename, as a qcow2 rollback replaces its disk. access(2) reports only the
// immutable flag, so the engine reads these before it journals a rollback.
#pragma once

#include <string>

namespace blocksnap {

struct InodeFlags {
  bool append_only = false;
  bool immutable = false;
};

// The flags of the file or directory at `path` (symlinks followed). A filesystem that keeps no
// such flags (the ioctl is unsupported), or a file that is neither regular nor a directory, has
// none. Fails (IOError, PermissionDenied, ImageNotFound) where the path cannot be opened.
InodeFlags inode_flags(const std::string& path);

}  // namespace blocksnap
