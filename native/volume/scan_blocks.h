// Snapshot of a copy-on-write disk: hashes only the blocks its frozen layers changed, reading
// them through those layers and the base, and stores the new ones exactly as scan_image does
// (write-behind into core/block_writer, directories fsynced before returning).
#pragma once

#include <cstdint>
#include <vector>

#include "core/parallel.h"
#include "volume/volume_source.h"

namespace blocksnap {

struct ScanBlocksParams {
  std::string store_dir;
  std::string granule_dir;  // where to write the granule file of each block stored; empty: none
  uint64_t block_size = 0;
  std::vector<uint32_t> blocks;  // block indexes to read
  // Digests of blocks known to be damaged in the store (n × 32, BlockWriter::set_damaged): a block
  // read that hashes to one is stored again over the damaged file, even where it equals the base's.
  std::vector<uint8_t> damaged_digests;
  unsigned threads = 0;          // 0 = one per core
};

struct ScanBlocksResult {
  std::vector<uint8_t> digests;  // blocks.size() × 32 in the order of `blocks`, ZERO as zeros
  uint64_t bytes_read = 0;
  uint64_t zero_blocks = 0;
  uint64_t blocks_written = 0;
  uint64_t bytes_written = 0;
  std::vector<uint8_t> repaired_digests;  // damaged digests this scan rewrote, n × 32
  std::vector<uint8_t> written_digests;   // as ScanResult's (core/scan_image.h)
};

// Progress is in blocks. A block whose digest equals the base's at its index is already stored
// and not written again, unless it is damaged there (damaged_digests). Throws Error (InvalidArgument for an index past the end).
ScanBlocksResult scan_volume_blocks(const VolumeSource& source, const ScanBlocksParams& params, JobControl& control,
                                    const ProgressFn& progress);

}  // namespace blocksnap
