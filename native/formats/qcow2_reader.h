// Reading the guest-visible content of a qcow2 image (versions 2 and 3) through its L1/L2 tables
// and backing chain, for the scanner.
//
// The file is untrusted: every offset and size taken from it is checked against the file and
// the format before it is used, and a malformed image fails with ImageCorrupt (or
// UnsupportedFormat for valid features this reader does not handle: encryption, external data
// files, zstd compression, unknown incompatible features), never with a crash, an unbounded
// allocation or a read outside the file. The corrupt bit QEMU sets on an image it found
// inconsistent is honoured the same way; the dirty bit (lazy refcounts, an unclean close) is
// not an error, because only refcounts may be stale and reading never uses them.
//
// What is cached: the header and the L1 table (bounded by QEMU's own 32 MiB L1 limit). L2 tables
// are read per request, only the entries the request covers, so the source stays immutable and
// all scan threads share it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "formats/block_source.h"

namespace blocksnap {

struct Qcow2Header {
  uint32_t version = 0;
  uint32_t cluster_bits = 0;
  uint64_t size = 0;  // virtual size
  uint32_t crypt_method = 0;
  uint32_t l1_size = 0;
  uint64_t l1_offset = 0;
  uint32_t nb_snapshots = 0;
  uint64_t incompatible = 0, compatible = 0, autoclear = 0;
  uint32_t refcount_order = 4;
  uint32_t header_length = 0;
  uint8_t compression_type = 0;
  std::string backing_file;    // exactly as stored (relative names stay relative)
  std::string backing_format;  // from the backing format extension; empty when absent

  uint64_t cluster_size() const { return uint64_t{1} << cluster_bits; }
  bool extended_l2() const;
};

// Parses and validates a header from the first bytes of a file (`head` holds the first
// min(file size, cluster size) bytes, or at least what was available). Throws NotAnImage (no
// magic), ImageCorrupt or UnsupportedFormat. Pure: no I/O, so it is also the fuzz target's core.
Qcow2Header parse_qcow2_header(std::span<const uint8_t> head, uint64_t file_size, const std::string& path);

// Reads and parses the header of the file at `path`.
Qcow2Header read_qcow2_header(const std::string& path);

// Backing files deeper than this are refused: a chain that names itself would otherwise open
// files until descriptors ran out.
inline constexpr unsigned kMaxBackingDepth = 64;

// A backing file as the engine found it and checked it against the image roots.
struct CheckedBacking {
  std::string path;  // the name QEMU opens: the referring image's backing name, resolved (resolve_backing_path)
  std::string real;  // the real path `path` led to when it was checked, and the only file read for it
  ImageFormat format;
};

struct Qcow2OpenOptions {
  // 0 refuses any backing file (UnsupportedFormat); the fuzzer uses it so that an input cannot
  // make it open arbitrary paths.
  unsigned max_backing_depth = kMaxBackingDepth;
  // The backing files the engine checked, nearest first. When set, the chain is not followed by
  // name: whoever can write inside an image root can, after the check, swap a directory on the
  // way for a symlink or rewrite the backing name in a header, and the daemon would then read,
  // with its own rights, a file the client may not. Instead exactly these files are read, each
  // opened by its checked real path without following a symlink (NotAnImage when one was swapped
  // in), and the source is refused (NotAnImage, "changed after it was checked") unless the
  // headers read now name this same chain: every backing name resolving to `path`, `path` still
  // leading to the file opened, the formats as checked, the chain no longer and no shorter.
  const std::vector<CheckedBacking>* checked_backing = nullptr;
  // qcow2_backing_chain only: open the image itself by name, following symlinks as QEMU does (a
  // path a client gave, compared with its real path). Otherwise it is opened as a checked real
  // path (open_image_checked), so that nothing of a file a symlink swapped in leads to (its size,
  // its backing names) reaches a client.
  bool top_as_given = false;
};

// One element of a backing chain, image first.
struct ChainElement {
  std::string path;  // as opened (relative names resolved against the referring image's directory)
  ImageFormat format;
};

// The image and its backing files, image first. Validates every qcow2 header on the way, and
// gives the image's own in `top_header` when asked.
std::vector<ChainElement> qcow2_backing_chain(const std::string& path, const Qcow2OpenOptions& options = {},
                                              Qcow2Header* top_header = nullptr);

// Opens a qcow2 image and its backing chain as a BlockSource.
std::unique_ptr<BlockSource> open_qcow2_source(const std::string& path, const Qcow2OpenOptions& options = {});

// Where a backing file name refers to: absolute names as they are, relative ones against the
// directory of the image that names them (QEMU's rule).
std::string resolve_backing_path(const std::string& image_path, const std::string& backing_name);

}  // namespace blocksnap
