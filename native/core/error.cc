#include "core/error.h"

#include <cerrno>
#include <cstring>

namespace blocksnap {

const char* error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::InvalidArgument: return "InvalidArgument";
    case ErrorCode::ImageNotFound: return "ImageNotFound";
    case ErrorCode::NotAnImage: return "NotAnImage";
    case ErrorCode::PermissionDenied: return "PermissionDenied";
    case ErrorCode::FileExists: return "FileExists";
    case ErrorCode::NoSpace: return "NoSpace";
    case ErrorCode::IOError: return "IOError";
    case ErrorCode::DigestMismatch: return "DigestMismatch";
    case ErrorCode::BlockMissing: return "BlockMissing";
    case ErrorCode::BlockCorrupt: return "BlockCorrupt";
    case ErrorCode::Cancelled: return "Cancelled";
    case ErrorCode::DataDirLocked: return "DataDirLocked";
    case ErrorCode::UnsupportedFormat: return "UnsupportedFormat";
    case ErrorCode::ImageCorrupt: return "ImageCorrupt";
    case ErrorCode::ImageTooLarge: return "ImageTooLarge";
    case ErrorCode::ImageReplaced: return "ImageReplaced";
  }
  return "Internal";
}

std::string describe_errno(int err) {
  char buf[256];
  // GNU strerror_r: returns a pointer that may or may not be buf.
  std::string text = strerror_r(err, buf, sizeof buf);
  if (const char* name = strerrorname_np(err)) text += std::string(" (") + name + ")";
  return text;
}

static Error make(ErrorCode code, int err, const char* syscall, const std::string& path) {
  Error e(code, std::string(syscall) + " " + path + ": " + describe_errno(err));
  e.sys_errno = err;
  e.syscall = syscall;
  e.path = path;
  return e;
}

Error Error::system(int err, const char* syscall, const std::string& path) {
  switch (err) {
    case ENOSPC:
    case EDQUOT: return make(ErrorCode::NoSpace, err, syscall, path);
    case EACCES:
    case EPERM: return make(ErrorCode::PermissionDenied, err, syscall, path);
    default: return make(ErrorCode::IOError, err, syscall, path);
  }
}

Error Error::image(int err, const char* syscall, const std::string& path) {
  switch (err) {
    case ENOENT: return make(ErrorCode::ImageNotFound, err, syscall, path);
    case EEXIST: return make(ErrorCode::FileExists, err, syscall, path);
    // ELOOP is what O_NOFOLLOW reports for a symlink: blocksnap never writes through one.
    case EISDIR:
    case ENOTDIR:
    case ELOOP: return make(ErrorCode::NotAnImage, err, syscall, path);
    default: return system(err, syscall, path);
  }
}

}  // namespace blocksnap
