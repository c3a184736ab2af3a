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
// all scan threads share it. An image a running QEMU writes meanwhile is read as it is then: its
// file's size is looked up again whenever an offset lies past the size last seen, so clusters
// appended after the open are read, not called past the end; a region that got its first L2
// table after the open reads as it was at the open (unallocated), which a snapshot taken while a
// VM writes (crash-consistent) may hold.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "formats/backing_name.h"
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
  // Persistent dirty bitmaps as QEMU would load them: 0 without the bitmaps extension, and with
  // one whose autoclear bit is clear (QEMU then holds them inconsistent and drops them).
  uint32_t nb_bitmaps = 0;
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
  // The file whose rights were checked for the client (require_identity); none for root's jobs.
  std::optional<FileIdentity> id = std::nullopt;
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
  // The top image must be this file (require_identity); none for root's jobs.
  std::optional<FileIdentity> image_id;
};

// One qcow2 file of a backing chain, read on its own. The engine follows a chain one file at a
// time (inspectImage) and checks each backing name against the image roots before the file is
// opened: opening it first would read, with the daemon's rights, a file the client may not (and
// an error would describe it), and opening a FIFO or a device can block or have side effects. So
// nothing here opens, stats or probes the backing file.
struct Qcow2Link {
  Qcow2Header header;
  // The header's backing name resolved as QEMU resolves it (resolve_backing_path) from the name
  // the image is known by; empty when it names none.
  std::string backing_path;
  // The backing format the header records. Empty when it records none: the format is then
  // probed from the file's first bytes, which only the engine may do, once it checked the file.
  std::optional<ImageFormat> backing_format;
  dev_t dev = 0;  // the file read, for the engine to find a chain that refers back into itself
  ino_t ino = 0;
};

// Reads the header of the qcow2 image at the checked real path `path` (open_image_checked: never
// through a symlink, only a regular file), which QEMU knows as `named_as`: the path a client gave
// for the disk image, the resolved backing name for a backing file. Throws NotAnImage,
// ImageCorrupt, or UnsupportedFormat (also for a backing name QEMU reads as a protocol, see
// formats/backing_name.h, and a backing format other than raw and qcow2).
// With `expected`, the file opened must be that one (require_identity) before anything is read.
Qcow2Link read_qcow2_link(const std::string& path, const std::string& named_as, const std::optional<FileIdentity>& expected = std::nullopt);

// Opens a qcow2 image and its backing chain as a BlockSource.
std::unique_ptr<BlockSource> open_qcow2_source(const std::string& path, const Qcow2OpenOptions& options = {});

// The backing chain an image in the directory of `image_path` reads through when its header names
// `backing_name` with `backing_format` ("raw", "qcow2", or empty to probe): what its unallocated
// clusters read as (a new image that will name it, a rollback's). Read as a scan reads a chain:
// exactly the files `checked` (nearest first, not empty), refused (NotAnImage) when the name no
// longer leads to the first or the chain's headers now name another (see Qcow2OpenOptions).
std::unique_ptr<BlockSource> open_backing_chain(const std::string& image_path, const std::string& backing_name,
                                                const std::string& backing_format, const std::vector<CheckedBacking>& checked);

}  // namespace blocksnap
