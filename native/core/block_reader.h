// Reads a block back from the store and proves it is the block asked for: header checked,
// payload re-hashed against the digest (invariant 5: never silent wrong data).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/digest.h"
#include "io/unique_fd.h"

namespace blocksnap {

struct BlockReadOptions {
  // The raw length the caller needs (apply knows it from the block index); unset accepts any.
  std::optional<uint64_t> expected_length;
  // Verify streams the whole store once; it should not evict the page cache the VMs use.
  bool drop_cache = false;
  // Apply reads each block once: drop the pages this read brought into the cache, keep the ones
  // that were cached before it (io/page_cache.h).
  bool keep_page_cache = false;
  // A first read that must leave the block cached for a second read soon after (a rollback
  // verifies every block it will write before it writes any): receives the residency of the
  // file's pages before this read, and leaves them all cached.
  std::vector<uint8_t>* cached_before_out = nullptr;
  // That second read: afterwards drops the pages `*cached_before_in` does not mark resident.
  const std::vector<uint8_t>* cached_before_in = nullptr;
  // When set, the verification also fills it with the hash's marks every `mark_piece` bytes
  // (sha256_marked in core/digest.h): a granule file for free.
  std::vector<Digest>* marks = nullptr;
  size_t mark_piece = 0;
};

// Checks an open block file against what version 1 fixes (decode_block_header), the digest it
// should hold, the raw length the caller expects (when set) and its size. Returns the header.
// Throws BlockCorrupt (with the digest and path) / IOError.
BlockHeader check_block_header(int fd, const std::string& path, const Digest& digest, std::optional<uint64_t> expected_length);
// The same for a header already read of a file of `file_size` bytes.
BlockHeader check_block_header(const uint8_t (&raw_header)[kBlockHeaderSize], uint64_t file_size, const std::string& path, const Digest& digest,
                               std::optional<uint64_t> expected_length);

// Opens the block file at `path` for reading: never follows a symlink, never waits on a FIFO
// (io/open_regular.h). Throws BlockMissing (no file), BlockCorrupt "not a regular file" (a
// symlink, directory, FIFO, socket or device under the block's name: damage a repair replaces
// like any other), IOError; each with the digest.
UniqueFd open_block_file(const std::string& path, const Digest& digest);

// Fills `buf` with the payload and returns its length. Throws BlockMissing (no file),
// BlockCorrupt (header or length wrong), DigestMismatch (payload hash differs), IOError.
// Errors carry the digest; the caller adds the block index.
size_t read_block(const std::string& store_dir, const Digest& digest, AlignedBuffer& buf,
                  const BlockReadOptions& options = {});

}  // namespace blocksnap
