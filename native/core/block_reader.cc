#include "core/block_reader.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>

#include "core/block_format.h"
#include "core/error.h"
#include "core/store_layout.h"
#include "io/file_io.h"
#include "io/open_regular.h"
#include "io/page_cache.h"
#include "io/unique_fd.h"

namespace blocksnap {

namespace {

Error corrupt(const std::string& path, const Digest& digest, const std::string& why) {
  Error e(ErrorCode::BlockCorrupt, "block " + to_hex(digest) + " is corrupt: " + why);
  e.path = path;
  e.digest = digest;
  return e;
}

}  // namespace

BlockHeader check_block_header(int fd, const std::string& path, const Digest& digest, std::optional<uint64_t> expected_length) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw std::move(Error::system(errno, "fstat", path)).with_digest(digest);
  if (!S_ISREG(st.st_mode)) throw corrupt(path, digest, "not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  uint8_t raw_header[kBlockHeaderSize];
  if (read_at(fd, raw_header, sizeof raw_header, 0, path) != sizeof raw_header)
    throw corrupt(path, digest, "file of " + std::to_string(file_size) + " bytes is shorter than the header");
  return check_block_header(raw_header, file_size, path, digest, expected_length);
}

BlockHeader check_block_header(const uint8_t (&raw_header)[kBlockHeaderSize], uint64_t file_size, const std::string& path, const Digest& digest,
                               std::optional<uint64_t> expected_length) {
  BlockHeader header;
  std::string why;
  if (!decode_block_header(raw_header, header, why)) throw corrupt(path, digest, why);
  if (header.digest != digest)
    throw corrupt(path, digest, "header names digest " + to_hex(header.digest));
  if (expected_length && header.raw_length != *expected_length)
    throw corrupt(path, digest, "raw length " + std::to_string(header.raw_length) + ", expected " +
                                    std::to_string(*expected_length));
  if (file_size != kBlockHeaderSize + header.payload_length)
    throw corrupt(path, digest, "file size " + std::to_string(file_size) + " does not match payload length " +
                                    std::to_string(header.payload_length));
  return header;
}

UniqueFd open_block_file(const std::string& path, const Digest& digest) {
  UniqueFd fd(open_retry(path.c_str(), kOpenRegularFlags));
  if (!fd) {
    const int err = errno;
    if (err == ENOENT) {
      Error e(ErrorCode::BlockMissing, "block " + to_hex(digest) + " is missing from the store");
      e.sys_errno = ENOENT;
      e.syscall = "open";
      e.path = path;
      e.digest = digest;
      throw e;
    }
    if (refused_as_not_regular(path.c_str(), err)) throw corrupt(path, digest, "not a regular file");
    throw std::move(Error::system(err, "open", path)).with_digest(digest);
  }
  if (!opened_regular(fd.get())) throw corrupt(path, digest, "not a regular file");
  return fd;
}

size_t read_block(const std::string& store_dir, const Digest& digest, AlignedBuffer& buf,
                  const BlockReadOptions& options) {
  const std::string path = block_file_path(store_dir, digest);
  UniqueFd fd = open_block_file(path, digest);

  const BlockHeader header = check_block_header(fd.get(), path, digest, options.expected_length);
  const uint64_t file_size = kBlockHeaderSize + header.payload_length;

  const size_t len = static_cast<size_t>(header.payload_length);
  buf.reserve(len);
  // The header read above cached at most the file's first pages; residency is taken over the
  // whole file before the payload read, which is what brings the block in.
  std::vector<uint8_t> cached_before;
  if (options.keep_page_cache || options.cached_before_out != nullptr)
    cached_before = resident_pages(fd.get(), 0, static_cast<size_t>(file_size));
  if (read_at(fd.get(), buf.data(), len, kBlockHeaderSize, path) != len)
    throw corrupt(path, digest, "payload truncated while reading");
  if (options.drop_cache) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  else if (options.cached_before_in != nullptr)
    drop_pages_not_resident(fd.get(), 0, static_cast<size_t>(file_size), *options.cached_before_in);
  else if (options.keep_page_cache && options.cached_before_out == nullptr)
    drop_pages_not_resident(fd.get(), 0, static_cast<size_t>(file_size), cached_before);
  if (options.cached_before_out != nullptr) *options.cached_before_out = std::move(cached_before);

  const Digest actual = options.marks != nullptr ? sha256_marked(buf.data(), len, options.mark_piece, *options.marks)
                                                 : sha256(buf.data(), len);
  if (actual != digest) {
    Error e(ErrorCode::DigestMismatch,
            "block " + to_hex(digest) + " does not match its digest: the block store is corrupt");
    e.path = path;
    e.digest = digest;
    throw e;
  }
  return len;
}

}  // namespace blocksnap
