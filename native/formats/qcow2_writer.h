// Writing a snapshot's content as a fresh qcow2 image (clone --format qcow2, rollback of a qcow2
// disk).
//
// Layout, in clusters: the header, the L1 table, then data clusters and L2 tables in guest order
// as they fill, then the refcount blocks and the refcount table. Every cluster in the file is
// used exactly once (refcount 1, the COPIED flag everywhere), so `qemu-img check` finds nothing
// to repair and no leaked cluster. ZERO content allocates nothing: without a backing file such
// clusters stay unallocated; with one they must hide the backing content, so they are zero
// clusters in v3 and, in v2 (which has no zero flag), allocated clusters left as holes in the
// file (they read as zeros and take no space).
//
// Every block comes from the store verified against its digest (invariant 6). Threads read and
// verify blocks in parallel and take turns laying them out, so the file is written strictly in
// guest order: the disk sees one sequential stream.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/parallel.h"

namespace blocksnap {

struct Qcow2WriteParams {
  // The file to create (O_EXCL, 0600, never through a symlink). With `replace` set, a stale file
  // of that name from an interrupted run is removed first.
  std::string image_path;
  std::string store_dir;
  uint64_t block_size = 0;
  uint64_t size_bytes = 0;       // virtual size; rounded up to 512 bytes, as QEMU counts sectors
  std::vector<uint8_t> digests;  // ceil(size_bytes / block_size) × 32
  uint32_t cluster_bits = 16;
  uint32_t version = 3;
  std::string backing_file;      // stored as given; empty for none
  std::string backing_format;    // "raw" or "qcow2" (written as the backing format extension)
  // Rollback: once complete, image_path is renamed over this path. Both files carry QEMU's locks
  // meanwhile, and the new file takes the replaced file's owner, group and mode.
  std::string replace;
  unsigned threads = 0;  // readers of the store; 0 = one per core
};

struct Qcow2WriteResult {
  uint64_t size_bytes = 0;      // virtual size written
  uint64_t blocks_written = 0;  // non-ZERO blocks copied from the store
  uint64_t bytes_written = 0;   // their bytes
  uint64_t file_bytes = 0;      // size of the resulting file
};

// Progress in bytes of the virtual size. Durable (file and directory fsynced) when it returns; a
// failure removes the new file. Throws Error.
Qcow2WriteResult write_qcow2_image(const Qcow2WriteParams& params, JobControl& control, const ProgressFn& progress);

}  // namespace blocksnap
