#include "io/file_attributes.h"

#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>

#include "core/error.h"
#include "core/image_file.h"
#include "io/file_io.h"
#include "io/unique_fd.h"

namespace blocksnap {

// ---- Extended attributes of the replaced image
//
// The file a rollback renames over the disk must be the disk to everyone who uses it, and much of
// that lives in extended attributes: libvirt's svirt label (security.selinux, with the VM's MCS
// categories), POSIX ACLs (system.posix_acl_access), trusted.* and user.* of tools and users. So
// the new image gets every attribute the old one has, or the rollback is refused before the
// rename. A refusal throws before the new file has a name (it is dropped; where it has one from
// its creation, RemoveCreatedOnFailure removes it); the old image was only read and is the disk's content as before; the engine's journal stays set,
// and a rerun once the cause is fixed completes the rollback. A rollback that silently changed
// who may access the disk (a VM whose label no longer admits it, or one another VM's label
// admits; an ACL entry gone) would be worse than a refused one. The cases:
//
// - Listing fails with ENOTSUP: the filesystem keeps no extended attributes, so neither file has
//   any (the new one is in the same directory); nothing to copy. Any other listing or reading
//   error refuses: what would be dropped is unknown.
// - An attribute listed is gone when read (ENODATA): it was removed meanwhile; nothing to carry.
// - trusted.*: the kernel lists and reads them only for CAP_SYS_ADMIN, so a daemon not running as
//   root never sees them and cannot keep them (docs/design.md says so). One that sees them may
//   also write them: a failure then refuses like any other.
// - Writing one fails (EPERM/EACCES for a daemon not running as root: relabelling needs the
//   policy's relabelfrom/relabelto, other security.* names CAP_SYS_ADMIN, CAP_MAC_ADMIN or
//   CAP_SETFCAP; ENOSPC; anything else): refused, whatever the namespace. For security.* and
//   ACLs that is the point above; for the rest, once the daemon can read an attribute the only
//   failures left are a full filesystem or a filesystem's quirk, and the rule stays one rule:
//   every attribute the daemon sees, or the old image.
// - The new file already holds an equal value (the label the policy gave it at creation, say):
//   nothing is written, because relabelling to the very same label still needs relabel
//   permission, which a daemon not running as root may lack although nothing would change.
// - security.ima and security.evm are not copied: they are a hash or signature of the old
//   content and an HMAC over the old inode, kept by the kernel; a stale one would make IMA
//   appraisal refuse the new image, and an HMAC cannot be written from user space at all.
// - An access ACL the new file has and the old one lacks is removed: the directory's default ACL
//   gives every file created in it one, which would admit whoever it names to the disk.
// - The owner and group: the same rule (refuse_owner). A daemon not running as root rolls back
//   only a disk file of its own user, in one of its groups.
// - Inode flags and the project id (inode_flags.h): the same rule too.
//
// The rollback can copy only once the whole new image is written, long after the engine
// journaled it: a refusal then leaves the disk refusing snapshots until the cause is fixed and the
// rollback rerun. So check_attributes_copyable asks first, on a scratch file that gets what the
// new image would, and such a rollback is refused before it starts; the rollback still copies
// (and may still refuse) at the end, since the disk's attributes may change meanwhile.

namespace {

constexpr size_t kXattrFirstBuffer = 256;  // a label or a small ACL; lists and values grow past it
constexpr const char* kAccessAcl = "system.posix_acl_access";

// flistxattr/fgetxattr into `buf`. Asking the size and then reading is racy (another process may
// add an attribute or lengthen a value in between, and the read fails with ERANGE), so every
// ERANGE asks again and retries with at least twice the room. Returns the length, or -1 (errno).
template <typename Call>
ssize_t read_growing(std::vector<char>& buf, const Call& call) {
  for (;;) {
    const ssize_t n = call(buf.data(), buf.size());
    if (n >= 0 || errno != ERANGE) return n;
    const ssize_t need = call(nullptr, 0);
    if (need < 0) return -1;
    buf.resize(std::max(static_cast<size_t>(need), buf.size() * 2));
  }
}

// Names; none where the filesystem keeps no extended attributes.
std::vector<std::string> list_xattrs(int fd, const std::string& path) {
  std::vector<char> buf(kXattrFirstBuffer);
  const ssize_t n = read_growing(buf, [fd](char* b, size_t size) { return ::flistxattr(fd, b, size); });
  if (n < 0) {
    if (errno == ENOTSUP || errno == EOPNOTSUPP) return {};
    throw Error::system(errno, "flistxattr", path);
  }
  std::vector<std::string> names;
  for (size_t at = 0; at < static_cast<size_t>(n);) {
    const size_t len = ::strnlen(buf.data() + at, static_cast<size_t>(n) - at);
    if (len != 0) names.emplace_back(buf.data() + at, len);
    at += len + 1;
  }
  return names;
}

// The value, or nullopt with errno set (ENODATA: no such attribute).
std::optional<std::string> get_xattr(int fd, const std::string& name) {
  std::vector<char> buf(kXattrFirstBuffer);
  const ssize_t n = read_growing(buf, [&](char* b, size_t size) { return ::fgetxattr(fd, name.c_str(), b, size); });
  if (n < 0) return std::nullopt;
  return std::string(buf.data(), static_cast<size_t>(n));
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

[[noreturn]] void refuse_xattr(int err, const char* syscall, const std::string& name, const std::string& new_path,
                               const std::string& replaced) {
  const bool access = starts_with(name, "security.") || starts_with(name, "system.");
  Error e(Error::system(err, syscall, replaced).code(),
          "cannot give the new image " + new_path + " the extended attribute " + name + " of " + replaced + " (" +
              syscall + ": " + describe_errno(err) + "); the rollback is refused and " + replaced +
              " left as it was, rather than " +
              (access ? "changing who may access the disk" : "dropping the attribute") +
              (err == EPERM || err == EACCES ? " (a daemon not running as root may lack the right to set it)" : ""));
  e.sys_errno = err;
  e.syscall = syscall;
  e.path = replaced;
  throw e;
}

void set_xattrs(int fd, const std::vector<Xattr>& attrs, const std::string& path, const std::string& replaced) {
  for (const Xattr& x : attrs) {
    const std::optional<std::string> now = get_xattr(fd, x.name);
    if (now && *now == x.value) continue;
    if (::fsetxattr(fd, x.name.c_str(), x.value.data(), x.value.size(), 0) != 0)
      refuse_xattr(errno, "fsetxattr", x.name, path, replaced);
  }
}

std::string user_name(uid_t uid) {
  std::vector<char> buf(16384);
  struct passwd pw, *found = nullptr;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return std::to_string(uid);
  return std::to_string(uid) + " (" + found->pw_name + ")";
}

std::string group_name(gid_t gid) {
  std::vector<char> buf(16384);
  struct group gr, *found = nullptr;
  if (::getgrgid_r(gid, &gr, buf.data(), buf.size(), &found) != 0 || !found) return std::to_string(gid);
  return std::to_string(gid) + " (" + found->gr_name + ")";
}

// The new file is the daemon's and would stay so: a daemon not running as root can give a file
// neither to another user nor to a group it is not a member of (and root cannot either where the
// filesystem forbids it: NFS with root_squash). The disk's owner would then lose access to its
// own disk, which only root could give back; so it is refused, as a label that cannot be set.
[[noreturn]] void refuse_owner(int err, const FileAttributes& attrs, const std::string& path, const std::string& from) {
  if (err != EPERM) throw Error::system(err, "fchown", path);
  Error e(ErrorCode::PermissionDenied,
          "cannot give the new image " + path + " the owner and group of " + from + ", user " + user_name(attrs.uid) +
              " and group " + group_name(attrs.gid) + " (fchown: " + describe_errno(err) + "); the rollback is refused and " +
              from + " left as it was, rather than giving the disk to the daemon's user (uid " + std::to_string(::geteuid()) +
              ") and locking its owner out: a daemon not running as root can give a file only its own user and one of its "
              "groups. Run the daemon as root, or clone the snapshot to a new image instead");
  e.sys_errno = err;
  e.syscall = "fchown";
  e.path = from;
  throw e;
}

std::string random_suffix() {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r)) {
    // O_EXCL catches a collision; the name need only be unlikely to be taken.
    r = reinterpret_cast<uintptr_t>(&r) ^ static_cast<uint64_t>(::time(nullptr)) ^ static_cast<uint64_t>(::getpid()) << 32;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, r);
  return buf;
}

// The refusal of a rollback whose new image the daemon may not create beside the disk `path`:
// the temp file the open named is one the operator never heard of, the directory is what to fix.
[[noreturn]] void refuse_directory(const Error& e, const std::string& path) {
  const std::string dir = parent_dir(path);
  Error out(e.code(), "the daemon may not create files in " + dir + " (" + e.syscall + ": " + describe_errno(e.sys_errno) +
                          "), which a qcow2 rollback of " + path +
                          " needs: it writes the disk's new image in that directory, then renames it over the disk");
  out.sys_errno = e.sys_errno;
  out.syscall = e.syscall;
  out.path = path;
  throw out;
}

// A file in `dir` that no name leads to once this returns, made as the rollback makes its new
// image (create_in), so it gets what that file gets (the default ACL's access ACL, the policy's
// label) and its creation fails as that one's would: a directory the daemon may not write
// refuses the rollback here too (naming the directory, not the file). Where it has a name (no
// O_TMPFILE), that is unlinked as soon as it exists, so a crash during the check leaves nothing
// in the disk's directory but in that instant.
UniqueFd create_scratch(int dir, const std::string& path, const std::string& new_image_path) {
  for (int attempt = 0;; ++attempt) {
    const std::string name = ".blocksnap-attributes-" + random_suffix();
    bool nameless = false;
    UniqueFd fd;
    try {
      fd = create_in(dir, name, new_image_path, nameless);
    } catch (const Error& e) {
      if (e.sys_errno == EEXIST && attempt < 8) continue;
      if (e.sys_errno == EACCES || e.sys_errno == EPERM || e.sys_errno == EROFS) refuse_directory(e, path);
      throw;
    }
    if (nameless) return fd;
    // Whoever may write the directory may have put something else under the name meanwhile,
    // which is not ours to remove.
    struct stat mine, entry;
    if (::fstat(fd.get(), &mine) != 0) throw Error::system(errno, "fstat", new_image_path);
    if (::fstatat(dir, name.c_str(), &entry, AT_SYMLINK_NOFOLLOW) == 0 && entry.st_dev == mine.st_dev &&
        entry.st_ino == mine.st_ino && ::unlinkat(dir, name.c_str(), 0) != 0)
      throw Error::system(errno, "unlink", parent_dir(new_image_path) + "/" + name);
    return fd;
  }
}

}  // namespace

FileAttributes read_file_attributes(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error::system(errno, "fstat", path);
  FileAttributes out;
  out.uid = st.st_uid;
  out.gid = st.st_gid;
  out.mode = st.st_mode & 07777;
  out.flags = read_carried_flags(fd, path);
  for (const std::string& name : list_xattrs(fd, path)) {
    if (name == "security.ima" || name == "security.evm") continue;
    std::optional<std::string> value = get_xattr(fd, name);
    if (!value) {
      if (errno == ENODATA) continue;
      throw Error::system(errno, "fgetxattr", path);
    }
    Xattr x{name, std::move(*value)};
    if (starts_with(name, "security.")) out.labels.push_back(std::move(x));
    else if (starts_with(name, "system.")) out.access.push_back(std::move(x));
    else out.plain.push_back(std::move(x));
    if (name == kAccessAcl) out.has_access_acl = true;
  }
  return out;
}

void apply_file_attributes(int fd, const FileAttributes& attrs, const std::string& path, const std::string& from) {
  // The order matters. The owner first: changing it drops security.capability and the set-id
  // bits. Plain attributes before the mode: user.* need write permission on the file, which the
  // daemon has on its 0600 file but, not running as root, may lose with the old mode (0460,
  // say, where it wrote the old image through its group). ACLs after the mode: setting one sets
  // the mode's permission bits from it, fchmod rewrites its mask entry; the old mode was set
  // from the old ACL the same way, so setting the ACL last leaves both as they were. Labels
  // last: once relabelled (to a VM's svirt category), the policy may no longer let the daemon
  // change the file's mode or ACL.
  if (::fchown(fd, attrs.uid, attrs.gid) != 0) refuse_owner(errno, attrs, path, from);
  apply_carried_flags(fd, attrs.flags, false, path, from);
  set_xattrs(fd, attrs.plain, path, from);
  if (::fchmod(fd, attrs.mode) != 0) throw Error::system(errno, "fchmod", path);
  if (!attrs.has_access_acl && get_xattr(fd, kAccessAcl) && ::fremovexattr(fd, kAccessAcl) != 0 && errno != ENODATA)
    refuse_xattr(errno, "fremovexattr", kAccessAcl, path, from);
  set_xattrs(fd, attrs.access, path, from);
  set_xattrs(fd, attrs.labels, path, from);
}

void copy_file_attributes(int from_fd, int to_fd, const std::string& from_path, const std::string& to_path) {
  apply_file_attributes(to_fd, read_file_attributes(from_fd, from_path), to_path, from_path);
}

void check_attributes_copyable(const std::string& path, const std::string& new_image_path) {
  const size_t slash = path.rfind('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") throw Error(ErrorCode::InvalidArgument, path + " does not name a file");
  const UniqueFd dir = open_image_dir(parent_dir(path));
  const ImageFile image = open_image_in(dir.get(), name, path);
  const UniqueFd scratch = create_scratch(dir.get(), path, new_image_path);
  copy_file_attributes(image.fd.get(), scratch.get(), path, new_image_path);
}

std::optional<std::string> access_acl(const std::string& path) {
  std::vector<char> buf(kXattrFirstBuffer);
  const ssize_t n = read_growing(buf, [&](char* b, size_t size) { return ::getxattr(path.c_str(), kAccessAcl, b, size); });
  if (n >= 0) return std::string(buf.data(), static_cast<size_t>(n));
  if (errno == ENODATA || errno == ENOTSUP || errno == EOPNOTSUPP) return std::nullopt;
  throw Error::image(errno, "getxattr", path);
}

}  // namespace blocksnap
