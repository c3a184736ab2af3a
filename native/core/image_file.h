// Opening disk images with the error codes an operator sees (ImageNotFound, NotAnImage, ...).
#pragma once

#include <cstdint>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include "io/unique_fd.h"

namespace blocksnap {

struct ImageFile {
  UniqueFd fd;
  uint64_t size = 0;
  // A file open_image_for_write created: the directory it was created in and its name there.
  // Its directory entry is synced, renamed and removed through this descriptor, never by path:
  // the path may lead somewhere else by then.
  UniqueFd dir;
  std::string name;
  // Created without a name (O_TMPFILE) and not given `name` yet: a crash now leaves nothing.
  bool nameless = false;
};

// The directory of a file to be created, opened without following a symlink in any component of
// an absolute path (openat2 RESOLVE_NO_SYMLINKS; where the kernel lacks it, O_NOFOLLOW and a
// comparison of what was opened with the path). The engine passes real paths it checked against
// the image roots, so a symlink met here was swapped in after that check: NotAnImage. A missing
// directory is ImageNotFound. Relative paths (tools, tests) are opened as given.
UniqueFd open_image_dir(const std::string& dir);

// A file the engine decided a client's rights on (st_dev, st_ino), and holds open until the job
// that uses it ends, so that no other file can take its inode number meanwhile. Whoever may write
// a directory on the path can rename another file (or directory) over it after that decision: the
// file a job opens for that client must be this one, or the rights decided were another file's.
struct FileIdentity {
  uint64_t dev = 0;
  uint64_t ino = 0;
};

// Refuses (ImageReplaced) unless `fd` is the file `expected` names; nothing without one (root's
// and the daemon's own jobs). `path` is for messages.
void require_identity(int fd, const std::optional<FileIdentity>& expected, const std::string& path);

// Read-only. Follows symlinks, as a qcow2 backing file name may; a disk image itself is opened
// with open_image_checked.
ImageFile open_image_for_read(const std::string& path);

// Read-only, for the disk image a job scans: never through a symlink in any component of an
// absolute path (the engine passes the real path it checked against the image roots), so a
// symlink swapped in after that check is refused (NotAnImage) instead of read. The file is opened
// like open_image_in, in its directory opened by open_image_dir, so this holds without /proc too.
// With `expected`, the file opened must be that one (require_identity).
ImageFile open_image_checked(const std::string& path, const std::optional<FileIdentity>& expected = std::nullopt);

// Read-only, for a file a client named that the daemon reads (a stream to import): `name`, one
// component, in `dir_fd`, a directory opened by open_image_dir, so that no symlink anywhere on the
// checked path is followed. O_NONBLOCK, because a FIFO swapped in after the check would otherwise
// block the open until some writer came. Anything but a regular file is NotAnImage; `path` is for
// messages only.
ImageFile open_image_in(int dir_fd, const std::string& name, const std::string& path);

// Who a created file is given to (fchown) while it has no name yet: the client that asked for it,
// so that the name never leads to a file of the daemon's that this client could not read.
struct FileOwner {
  uid_t uid;
  gid_t gid;
};

// Read-write, for apply. `create` makes a new 0600 file and fails FileExists if the path exists;
// otherwise the file must already exist. Never goes through a symlink (an existing file is opened
// in its directory opened by open_image_dir, like open_image_checked), so a link planted where an
// image is expected cannot redirect the write.
//
// A created file is made in a directory opened once (open_image_dir of the path's directory, or
// a duplicate of `dir_fd` when the caller holds it already) by create_in, so nothing is ever
// created outside that directory, even for an instant. It has no name until name_created. With
// `owner`, the created file is given to that user and group first (failing PermissionDenied,
// IOError, ... with nothing created).
// An existing file opened with `expected` must be that one (require_identity).
ImageFile open_image_for_write(const std::string& path, bool create, int dir_fd = -1,
                               const std::optional<FileOwner>& owner = std::nullopt,
                               const std::optional<FileIdentity>& expected = std::nullopt);

// A new 0600 file in `dir_fd` that is to be called `name` once complete: nameless (O_TMPFILE),
// so that a process killed while writing it leaves nothing anywhere (the kernel frees the inode;
// a partial file with a name outlives the crash, and where its directory was moved meanwhile
// no start-up finds it again). It is created under `name` (O_EXCL, O_NOFOLLOW), as before
// O_TMPFILE, where the filesystem has no O_TMPFILE (some FUSE and NFS), where the file could
// not be linked later (no /proc and no right to link by descriptor), and when the environment
// sets BLOCKSNAP_NO_TMPFILE (tests of that path). `nameless` tells which; `path` is for messages.
UniqueFd create_in(int dir_fd, const std::string& name, const std::string& path, bool& nameless);

// Gives a nameless file create_in made the name `name` in `dir_fd` (link(2): FileExists when the
// name is taken). The caller fsyncs the file first: once named, it is what a crash leaves.
void link_nameless(int fd, int dir_fd, const std::string& name, const std::string& path);

// link_nameless for a created image, once it is complete; nothing for one that has its name.
void name_created(ImageFile& image, const std::string& path);

// Makes a created file's directory entry durable (fsync of its held directory).
void sync_created_entry(const ImageFile& image, const std::string& path);

// Removes a created file from its held directory, if that name still is that very file (whoever
// can write the directory may have put something else there, which is not ours to delete).
// A nameless file needs nothing: closing it frees it.
void remove_created(const ImageFile& image) noexcept;

// A created file must not outlive a failed write: a half-written image that looks like a
// finished one is worse than none.
class RemoveCreatedOnFailure {
 public:
  explicit RemoveCreatedOnFailure(const ImageFile& image, bool armed = true) : image_(image), armed_(armed) {}
  ~RemoveCreatedOnFailure() {
    if (armed_) remove_created(image_);
  }
  RemoveCreatedOnFailure(const RemoveCreatedOnFailure&) = delete;
  RemoveCreatedOnFailure& operator=(const RemoveCreatedOnFailure&) = delete;
  void disarm() { armed_ = false; }

 private:
  const ImageFile& image_;
  bool armed_;
};

}  // namespace blocksnap
