#include "io/inode_flags.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cerrno>

#include "core/error.h"
#include "io/unique_fd.h"

namespace blocksnap {

namespace {

struct FlagLetter {
  unsigned flag;
  char letter;  // as chattr and lsattr name it
};

// In lsattr's order.
constexpr FlagLetter kCarried[] = {
    {FS_SECRM_FL, 's'}, {FS_UNRM_FL, 'u'},  {FS_SYNC_FL, 'S'},   {FS_NODUMP_FL, 'd'}, {FS_NOATIME_FL, 'A'}, {FS_COMPR_FL, 'c'},
    {FS_JOURNAL_DATA_FL, 'j'}, {FS_NOTAIL_FL, 't'}, {FS_NOCOW_FL, 'C'}, {FS_DAX_FL, 'x'}, {FS_NOCOMP_FL, 'm'},
};
constexpr unsigned kAtCreation = FS_COMPR_FL | FS_NOCOMP_FL | FS_NOCOW_FL | FS_DAX_FL;

constexpr unsigned carried_mask() {
  unsigned m = 0;
  for (const FlagLetter& f : kCarried) m |= f.flag;
  return m;
}

std::string letters(unsigned flags) {
  std::string out;
  for (const FlagLetter& f : kCarried)
    if (flags & f.flag) out.push_back(f.letter);
  return out;
}

bool unsupported(int err) { return err == ENOTTY || err == EOPNOTSUPP || err == EINVAL || err == ENOSYS; }

[[noreturn]] void refuse(int err, const char* syscall, const std::string& what, const std::string& to_path,
                         const std::string& from, const std::string& instead) {
  Error e(Error::system(err, syscall, from).code(),
          "cannot give the new image " + to_path + " the " + what + " of " + from + " (" + syscall + ": " + describe_errno(err) +
              "); the rollback is refused and " + from + " left as it was, rather than dropping " +
              (instead.empty() ? "it" : "them; to roll back without them, " + instead));
  e.sys_errno = err;
  e.syscall = syscall;
  e.path = from;
  throw e;
}

}  // namespace

InodeFlags inode_flags(const std::string& path) {
  // O_NONBLOCK: a FIFO put where the image was must not hang the check.
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd) throw Error::system(errno, "open", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw Error::system(errno, "fstat", path);
  InodeFlags out;
  // On a device the ioctl would go to its driver, whose meaning for the number is its own.
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return out;
  int flags = 0;
  if (::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) != 0) {
    if (unsupported(errno)) return out;
    throw Error::system(errno, "ioctl(FS_IOC_GETFLAGS)", path);
  }
  out.append_only = (flags & FS_APPEND_FL) != 0;
  out.immutable = (flags & FS_IMMUTABLE_FL) != 0;
  return out;
}

CarriedFlags read_carried_flags(int fd, const std::string& path) {
  CarriedFlags out;
  int flags = 0;
  if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
    out.has_flags = true;
    out.flags = static_cast<unsigned>(flags) & carried_mask();
  } else if (!unsupported(errno)) {
    throw Error::system(errno, "ioctl(FS_IOC_GETFLAGS)", path);
  }
  struct fsxattr fsx {};
  if (::ioctl(fd, FS_IOC_FSGETXATTR, &fsx) == 0) {
    out.has_project = true;
    out.project = fsx.fsx_projid;
  } else if (!unsupported(errno)) {
    throw Error::system(errno, "ioctl(FS_IOC_FSGETXATTR)", path);
  }
  return out;
}

void apply_carried_flags(int fd, const CarriedFlags& from_flags, bool creation_only, const std::string& to_path,
                         const std::string& from) {
  if (from_flags.has_flags) {
    const unsigned mask = creation_only ? kAtCreation : carried_mask();
    int now = 0;
    if (::ioctl(fd, FS_IOC_GETFLAGS, &now) != 0) {
      if (!unsupported(errno) || (from_flags.flags & mask) != 0) throw Error::system(errno, "ioctl(FS_IOC_GETFLAGS)", to_path);
    } else {
      const unsigned cur = static_cast<unsigned>(now);
      const unsigned want = (cur & ~mask) | (from_flags.flags & mask);
      if (want != cur) {
        int set = static_cast<int>(want);
        if (::ioctl(fd, FS_IOC_SETFLAGS, &set) != 0) {
          const std::string on = letters(from_flags.flags & mask), off = letters(cur & mask & ~from_flags.flags);
          refuse(errno, "ioctl(FS_IOC_SETFLAGS)", "inode flags (chattr)" + (on.empty() ? "" : " +" + on) + (off.empty() ? "" : " -" + off),
                 to_path, from, on.empty() ? "" : "clear them (chattr -" + on + " " + from + ") first");
        }
      }
    }
  }
  if (creation_only || !from_flags.has_project) return;
  struct fsxattr fsx {};
  if (::ioctl(fd, FS_IOC_FSGETXATTR, &fsx) != 0) {
    if (unsupported(errno) && from_flags.project == 0) return;
    throw Error::system(errno, "ioctl(FS_IOC_FSGETXATTR)", to_path);
  }
  if (fsx.fsx_projid == from_flags.project) return;
  fsx.fsx_projid = from_flags.project;
  if (::ioctl(fd, FS_IOC_FSSETXATTR, &fsx) != 0)
    refuse(errno, "ioctl(FS_IOC_FSSETXATTR)", "project id " + std::to_string(from_flags.project) + " (quota)", to_path, from, "");
}

}  // namespace blocksnap
