// Inode flags (chattr) and the project id (quota) of a file.
//
// Two uses. The flags that keep even root from changing a file the way a rollback does: an
// append-only file opens for writing only with O_APPEND, so a raw rollback cannot rewrite it in
// place, and neither an append-only nor an immutable file, nor any entry of such a directory, can
// be replaced by rename, as a qcow2 rollback replaces its disk. access(2) reports only the
// immutable flag, so the engine reads these before it journals a rollback.
//
// And what a qcow2 rollback's new image must take from the disk file it replaces, like its owner
// and extended attributes (file_attributes.h): the flags a host sets on images (nodump for
// backups, noatime, btrfs's NOCOW and compression, sync, DAX) and the project id its quota counts
// the disk under. Append-only and immutable are not carried: a disk file with either is refused
// before a rollback starts. Flags the kernel sets itself (extents, inline data, encryption,
// verity) and those of directories only are not either.
#pragma once

#include <cstdint>
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

// The carried flags and project id of a regular file; `has_*` false where the filesystem keeps
// none. Fails (IOError, PermissionDenied) where the ioctl fails otherwise.
struct CarriedFlags {
  bool has_flags = false;
  unsigned flags = 0;  // FS_*_FL, carried ones only
  bool has_project = false;
  uint32_t project = 0;
};
CarriedFlags read_carried_flags(int fd, const std::string& path);

// Gives `fd`, a file this process created, the carried flags of `from` (and its project id,
// unless `creation_only`). `creation_only` sets only the flags that act on data as it is written
// (NOCOW, compression, DAX), and which btrfs takes only while the file is empty: the writer sets
// them right after it creates the file, and the rest with the other attributes before the
// rename. What cannot be set refuses (PermissionDenied, IOError, ...) with a message naming the
// flags and `from` (the error's path), and `to_path` (the new image).
void apply_carried_flags(int fd, const CarriedFlags& from_flags, bool creation_only, const std::string& to_path,
                         const std::string& from);

}  // namespace blocksnap
