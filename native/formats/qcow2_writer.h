// Writing content as a fresh qcow2 image: a snapshot's (clone --format qcow2, rollback of a qcow2
// disk) or a copy-on-write disk's (disk flatten).
//
// Layout, in clusters: the header, the L1 table, then data clusters and L2 tables in guest order
// as they fill, then the refcount blocks and the refcount table. Every cluster in the file is
// used exactly once (refcount 1, the COPIED flag everywhere), so `qemu-img check` finds nothing
// to repair and no leaked cluster. ZERO content allocates nothing: without a backing file such
// clusters stay unallocated; with one they must hide the backing content, so they are zero
// clusters in v3 and, in v2 (which has no zero flag), allocated clusters left as holes in the
// file (they read as zeros and take no space).
//
// Given the backing chain's content (a rollback of an overlay always gives it), every cluster that
// reads the same from the chain (zeros past its end) is left unallocated, data or zeros: the image
// then holds only where it differs from its backing file, as the overlay did, instead of a copy of
// the backing file's data. Clusters are compared byte for byte; a store block whose digest is the
// chain's content there is not even read from the store (StoreSource::read_knowing).
//
// The content comes from a BlockSource: a snapshot in the store (StoreSource: every block verified
// against its digest, invariant 6) or any other source, such as an image or a copy-on-write volume
// being flattened. Threads read units in parallel and take turns laying them out, so the file is
// written strictly in guest order: the disk sees one sequential stream. Zero detection is per
// cluster, whatever the source says, so data clusters that happen to be zero take no space.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/image_file.h"
#include "core/held_bytes.h"
#include "core/parallel.h"
#include "formats/block_source.h"
#include "formats/qcow2_format.h"
#include "formats/qcow2_reader.h"
#include "io/unique_fd.h"

namespace blocksnap {

// The file-side options, shared by both entry points.
struct Qcow2ImageOptions {
  // The file to create (0600, never through a symlink, named only once complete: image_file.h).
  // With `replace` set, a name already taken (by anything) refuses it: FileExists, nothing removed.
  std::string image_path;
  // The held directory to create image_path in (see image_file.h); absent, it is opened from the
  // path. With `replace`, the directory is always opened here, once, for both names.
  std::shared_ptr<const UniqueFd> dir;
  // Who the new file is given to before it has a name (image_file.h); absent: the daemon's user.
  std::optional<FileOwner> owner;
  uint32_t cluster_bits = 16;
  uint32_t version = 3;
  std::string backing_file;      // stored as given; empty for none
  std::string backing_format;    // "raw" or "qcow2" (written as the backing format extension)
  // What QEMU compresses clusters written compressed later with (v3 only). Nothing is written
  // compressed here, so this only carries over what the image was created with.
  uint8_t compression_type = qcow2::kCompressionZlib;
  // Rollback: once complete, image_path is renamed over this path. Both files carry QEMU's locks
  // meanwhile, and the new file takes the replaced file's owner, group, mode and extended
  // attributes (one it cannot set refuses the rollback; see qcow2_writer.cc).
  std::string replace;
  // The file whose rights were checked for the client the disk belongs to: `replace`, opened and
  // locked, must be it (require_identity) before its attributes are read or anything is written.
  std::optional<FileIdentity> replace_id;
  // Bytes a thread reads from a source at a time (a power of two, 4 KiB to 64 MiB; raised to the
  // cluster size when smaller). write_qcow2_image reads whole store blocks instead.
  uint64_t chunk_size = 4 * 1024 * 1024;
  unsigned threads = 0;  // readers of the content; 0 = one per core
};

// A snapshot's content, from the store.
struct Qcow2WriteParams : Qcow2ImageOptions {
  std::string store_dir;
  uint64_t block_size = 0;
  uint64_t size_bytes = 0;       // virtual size; rounded up to 512 bytes, as QEMU counts sectors
  HeldBytes digests;  // ceil(size_bytes / block_size) × 32
  // With backing_file: the backing files the engine checked (nearest first), the chain the new
  // image's content is compared with (open_backing_chain, resolved from image_path's directory).
  std::vector<CheckedBacking> checked_backing;
};

struct Qcow2WriteResult {
  uint64_t size_bytes = 0;      // virtual size written
  uint64_t blocks_written = 0;  // store: non-ZERO blocks copied; source: chunks that held data
  uint64_t bytes_written = 0;   // bytes of data clusters written (within the size)
  uint64_t file_bytes = 0;      // size of the resulting file
  // Store: non-ZERO blocks left unallocated unread, their digest being the backing chain's content.
  uint64_t blocks_from_backing = 0;
  // Clusters that read as zeros over data of the backing chain: zero clusters (v3), or allocated
  // clusters left as holes in the file (v2).
  uint64_t clusters_zeroed = 0;
  uint64_t progress_total = 0;  // what progress counted as the whole work (below)
};

// Both: progress in bytes of data read, the source's (BlockSource::data_bytes: a snapshot's blocks
// that are not ZERO) and the backing chain's where one is compared; a rollback (`replace`) is
// Comparing until its new image is renamed over the disk, Writing from then on. Durable (file and directory fsynced) when it
// returns; a failure or cancellation leaves no new file. Throws Error.
Qcow2WriteResult write_qcow2_image(const Qcow2WriteParams& params, JobControl& control, const ProgressFn& progress);

// Any content (a raw or qcow2 image, a copy-on-write volume): the virtual size is source.size()
// rounded up to 512 bytes. The source is read from `threads` threads at once, at offsets that are
// multiples of the read unit (max(chunk_size, cluster)), each read a whole unit except at the end.
// Nothing is left to a backing file options name: every zero cluster then hides it.
Qcow2WriteResult write_qcow2_from_source(const BlockSource& source, const Qcow2ImageOptions& options,
                                         JobControl& control, const ProgressFn& progress);

}  // namespace blocksnap
