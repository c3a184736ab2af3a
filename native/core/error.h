// The one exception type of the native core. It carries a stable code from src/errors.ts plus the
// facts an operator needs to act on it (errno, syscall, path, block index, digest); the N-API
// layer copies every field onto the JS error, so nothing here may depend on N-API.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/digest.h"

namespace blocksnap {

// Subset of ERROR_CODES in src/errors.ts that native code can raise. Names are the wire strings.
enum class ErrorCode {
  InvalidArgument,
  ImageNotFound,
  NotAnImage,
  PermissionDenied,
  FileExists,
  NoSpace,
  IOError,
  DigestMismatch,
  BlockMissing,
  BlockCorrupt,
  Cancelled,
  DataDirLocked,
  UnsupportedFormat,
  ImageCorrupt,
  ImageTooLarge,
  ImageReplaced,
};

const char* error_code_name(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}

  // A failed system call: the code follows errno (ENOSPC → NoSpace, EACCES → PermissionDenied,
  // otherwise IOError) and the message names the call, the path and strerror.
  static Error system(int err, const char* syscall, const std::string& path);

  // Like system(), for opening a disk image, where ENOENT and "not a file" have their own codes.
  static Error image(int err, const char* syscall, const std::string& path);

  ErrorCode code() const noexcept { return code_; }
  const char* code_name() const noexcept { return error_code_name(code_); }

  int sys_errno = 0;
  std::string syscall;
  std::string path;
  std::optional<uint64_t> block_index;
  std::optional<Digest> digest;
  // Set by a rollback that failed before it wrote anything: the image is as it was.
  bool image_unchanged = false;
  // Set by a scan that failed or was cancelled: the block files it created (n × 32), which no
  // snapshot may reference yet; the engine frees them rather than leave them to `store gc`.
  std::vector<uint8_t> written_digests;

  Error&& with_block(uint64_t index) && {
    block_index = index;
    return std::move(*this);
  }
  Error&& with_digest(const Digest& d) && {
    digest = d;
    return std::move(*this);
  }

 private:
  ErrorCode code_;
};

// "No such file or directory (ENOENT)": thread-safe, unlike strerror().
std::string describe_errno(int err);

}  // namespace blocksnap
