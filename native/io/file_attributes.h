// What a file carries besides its bytes: owner, group, mode, extended attributes (POSIX ACLs,
// security labels, trusted.* and user.*), inode flags and project id (inode_flags.h). A qcow2 rollback renames a new image over the disk and
// must give it all of that, or refuse; the engine asks the same question of a scratch file before
// it journals the rollback, so that a rollback bound to be refused is refused before anything
// was written.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "io/inode_flags.h"

namespace blocksnap {

struct Xattr {
  std::string name, value;
};

// Grouped by when they are set (apply_file_attributes).
struct FileAttributes {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t mode = 0;            // permission, set-id and sticky bits
  std::vector<Xattr> plain;   // user.*, trusted.*, any other namespace
  std::vector<Xattr> access;  // system.*: POSIX ACLs (NFS lists system.nfs4_acl)
  std::vector<Xattr> labels;  // security.* but security.ima and security.evm
  bool has_access_acl = false;
  CarriedFlags flags;
};

// Everything of `fd` the caller can read. Fails (IOError, PermissionDenied) where an attribute
// cannot be read, since what would be dropped is then unknown; `path` is for messages.
FileAttributes read_file_attributes(int fd, const std::string& path);

// Gives `fd`, a file this process created, the attributes `attrs` of `from`, and removes an
// access ACL it has that `from` lacks. An owner or group that cannot be given (a daemon not
// running as root, which can give a file only its own user and one of its groups) refuses with
// PermissionDenied naming both. What else cannot be set refuses with the errno's code
// (PermissionDenied, NoSpace, IOError) and a message naming the attribute, `to_path` (the new
// image, in messages only) and `from`; the error's path is `from`.
void apply_file_attributes(int fd, const FileAttributes& attrs, const std::string& to_path, const std::string& from);

// read_file_attributes of `from_fd`, then apply_file_attributes to `to_fd`.
void copy_file_attributes(int from_fd, int to_fd, const std::string& from_path, const std::string& to_path);

// Whether a qcow2 rollback of the image at `path` could give its new image the image's
// attributes: the same copy onto a scratch file in the image's directory, refused the same way
// (`new_image_path`, the rollback's new image, names the file in the message). The directory and
// the image are opened without following a symlink (open_image_dir); the image is only read. The
// scratch file is made as the rollback's new image is (create_in): unnamed (O_TMPFILE) or,
// where it cannot be (or BLOCKSNAP_NO_TMPFILE is set, for tests), a uniquely named file unlinked
// as soon as it exists; it is gone once this returns either way. A directory the daemon may not create the new image in refuses too, as the
// rollback would, the message naming the directory (the new image's name means nothing to an operator).
void check_attributes_copyable(const std::string& path, const std::string& new_image_path);

// The POSIX access ACL of the file or directory at `path` (symlinks followed), in the kernel's
// binary form (system.posix_acl_access), for deciding what another user may do with it; nullopt
// when it has none or its filesystem keeps none. Fails (IOError, PermissionDenied, ImageNotFound)
// where the attribute cannot be read.
std::optional<std::string> access_acl(const std::string& path);

}  // namespace blocksnap
