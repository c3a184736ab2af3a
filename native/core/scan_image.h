// Snapshot side: turns an image into a digest per block and puts new blocks into the store.
//
// Cost model: allocated data is read once, holes are never read, all-zero blocks are never
// hashed, and only blocks that differ from the parent are looked up in or written to the store.
// Each block is read once into one buffer and hashed and stored from that same buffer, so a
// writer racing the scan can never make a digest disagree with the stored bytes.
// A block whose digest is known to be damaged in the store (ScanParams::damaged_digests) is the
// exception to "equal to the parent: not looked up": it is stored again, over the damaged file.
// A block wholly in the page cache that turns out equal to its parent's is hashed where it lies
// instead (core/hash_in_place.h): nothing of it is stored, so there is nothing to disagree with.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/held_bytes.h"
#include "core/parallel.h"
#include "formats/block_source.h"
#include "formats/qcow2_reader.h"

namespace blocksnap {

struct ScanParams {
  std::string image_path;
  ImageFormat format = ImageFormat::Raw;  // how to read the guest content of image_path
  // qcow2: the backing files the engine checked, nearest first, and all that is read besides the
  // image (Qcow2OpenOptions::checked_backing). Unset: the headers' names are followed (tools, tests).
  std::optional<std::vector<CheckedBacking>> checked_backing;
  // The file whose rights were checked for the client the disk belongs to: the image opened must
  // be it (require_identity). None for root's and the daemon's own disks.
  std::optional<FileIdentity> image_id;
  std::string store_dir;
  std::string granule_dir;  // where to write the granule file of each block stored; empty: none
  uint64_t block_size = 0;
  HeldBytes parent_digests;  // parent block count × 32; may be empty
  // Digests of blocks known to be damaged in the store (n × 32, BlockWriter::set_damaged): a block
  // that hashes to one is stored again over the damaged file, even where it equals the parent's.
  std::vector<uint8_t> damaged_digests;
  bool write_blocks = true;
  unsigned threads = 0;  // 0 = one per core
};

struct ScanResult {
  uint64_t size_bytes = 0;
  uint64_t block_count = 0;
  std::vector<uint8_t> digests;  // block_count × 32, ZERO as 32 zero bytes
  uint64_t bytes_read = 0;
  uint64_t zero_blocks = 0;
  uint64_t blocks_written = 0;
  uint64_t bytes_written = 0;
  std::vector<uint8_t> repaired_digests;  // damaged digests this scan rewrote, n × 32
  // Block files this scan created, n × 32: what the engine frees again if the snapshot is not
  // committed after all. A failed scan puts them on its Error (Error::written_digests).
  std::vector<uint8_t> written_digests;
  uint64_t progress_total = 0;  // what progress counted as the whole work: the data bytes
};

// The most blocks a snapshot may have (MAX_BLOCK_COUNT in src/stream/snapshot-fields.ts): its
// map (32 bytes a block) must fit in one buffer, and a stream or a remote carries no more. A
// header's virtual size alone, without data, can claim far more.
inline constexpr uint64_t kMaxBlockCount = uint64_t{1} << 27;

// Progress is in bytes the scan may have to read (BlockSource::data_bytes): for a raw image its
// data, for a qcow2 image the allocated clusters of its chain as the reader sees them. Throws Error (see core/error.h); ImageTooLarge, before
// anything is allocated for it, for an image of more than kMaxBlockCount blocks.
ScanResult scan_image(const ScanParams& params, JobControl& control, const ProgressFn& progress);

}  // namespace blocksnap
