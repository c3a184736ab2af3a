// Creating directories whose names must survive a power cut: by POSIX a new entry is durable only
// once its parent directory is fsynced (ext4 and XFS happen to commit it with the next fsync of
// anything; btrfs's log tree and other filesystems need not).
#pragma once

#include <sys/types.h>

#include <string>

namespace blocksnap {

// mkdir -p of `dir`, each missing level with `mode`, then the parent of each level it created
// fsynced once, and the parent of the deepest level that existed already (another job may have
// made it and not synced its name yet). Throws IOError,
// NoSpace, PermissionDenied (Error::system), naming the level that failed.
void make_dirs_durably(const std::string& dir, mode_t mode);

}  // namespace blocksnap
