// Rollback and clone side: makes an image hold exactly the content a digest array describes.
//
// Every block written comes from a store file whose header and payload hash were checked first;
// a block that fails the check is never written (invariant 5). In update mode only blocks whose
// current content differs are written, and ZERO targets become holes, so rolling back a disk
// costs its changed blocks, not its size; and every stored block the update needs is checked
// before it writes or punches anything, so a damaged store fails a rollback with the image as it
// was (Error::image_unchanged), and the caller may record that the image is about to change before
// it does (ApplyParams::before_write). Within a written block only its non-zero pages are
// written; its zero pages stay or become holes, so the image takes the space of its data. An
// update punches before it writes, so a rollback that fits also fits on a full filesystem.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/image_file.h"
#include "core/held_bytes.h"
#include "core/parallel.h"
#include "io/unique_fd.h"

namespace blocksnap {

enum class ApplyMode {
  Create,  // new sparse file, named only once complete (image_file.h); fails FileExists; nothing left if the apply fails
  Update,  // rewrite an existing image in place
};

struct ApplyParams {
  std::string image_path;
  // Create: the directory to create image_path's last component in, held by the caller since it
  // checked it (see image_file.h); absent, the directory is opened from the path.
  std::shared_ptr<const UniqueFd> dir;
  // Create: who the new file is given to before it has a name (image_file.h); absent: the daemon's user.
  std::optional<FileOwner> owner;
  // Update: the file whose rights were checked for the client the disk belongs to; the image
  // opened must be it (require_identity), before anything is written. None for root's disks.
  std::optional<FileIdentity> image_id;
  std::string store_dir;
  uint64_t block_size = 0;
  uint64_t size_bytes = 0;
  HeldBytes digests;  // ceil(size_bytes / block_size) × 32
  ApplyMode mode = ApplyMode::Create;
  unsigned threads = 0;
  // Update: called on the calling thread once every block has been compared and every stored
  // block the update needs checked, before the first change to the image, which waits for it to
  // return (a rollback's journal records there, durably, that its image may no longer be as it
  // was). A throw stops the update with the image as it was (Error::image_unchanged).
  std::function<void()> before_write;
};

struct ApplyResult {
  uint64_t blocks_written = 0;    // blocks copied from the store
  uint64_t bytes_written = 0;     // bytes written into the image: their data pages, not the zero
                                  // pages left holes
  uint64_t holes_punched = 0;     // ZERO targets that held data, punched
  uint64_t blocks_unchanged = 0;  // blocks that already held the target content (in Create mode,
                                  // the ZERO blocks)
  uint64_t blocks_zeroed = 0;     // ZERO targets that held data, zero-filled where the filesystem
                                  // cannot punch (ext2, many FUSE filesystems); the four counts
                                  // add up to the block count
  uint64_t progress_total = 0;    // what progress counted as the whole work (apply_image)
};

// Progress is in bytes of work, and the phase is set: a Create writes (Writing), its total the
// length of the blocks that are not ZERO; an Update compares (Comparing) the data bytes of the
// image, then writes (Writing) the blocks that differ, before which before_write was called. An
// Update's total starts with the length of every block whose target is not ZERO, and loses each
// one the comparison finds needs no write, so done over total never goes back. Durable (image
// fsynced, and for Create its directory entry) when it returns. Throws Error.
ApplyResult apply_image(const ApplyParams& params, JobControl& control, const ProgressFn& progress);

}  // namespace blocksnap
