#pragma once

#include <napi.h>

namespace blocksnap::js {

// checkAttributesCopyable(path, newImagePath) → undefined, or throws what a qcow2 rollback of the
// image at `path` would refuse with when giving its new image the image's owner, mode and
// extended attributes (io/file_attributes.h: check_attributes_copyable). Synchronous: an open, a
// scratch file and a few attribute calls, all in the image's directory.
Napi::Value check_attributes_copyable(const Napi::CallbackInfo& info);

// inodeFlags(path) → { appendOnly, immutable }: the chattr flags of the file or directory at
// `path` (io/inode_flags.h: inode_flags). Synchronous: an open and an ioctl.
Napi::Value inode_flags(const Napi::CallbackInfo& info);

// accessAcl(path) → Buffer | null: the POSIX access ACL of the file or directory at `path`, in the
// kernel's binary form (io/file_attributes.h: access_acl). Synchronous: one getxattr.
Napi::Value access_acl(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
