// Writing any content (an image, a copy-on-write volume being flattened) as a new raw image.
//
// The file is created sparse at its final size and only data is written: a range the source
// knows to be zero, or any 4 KiB piece that reads as zeros, stays a hole, so a flattened disk
// takes the space of its data. Threads read chunks in parallel and write them where they belong.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/image_file.h"
#include "core/parallel.h"
#include "formats/block_source.h"
#include "io/unique_fd.h"

namespace blocksnap {

struct RawWriteParams {
  std::string image_path;                 // created 0600, named only once complete (image_file.h), never through a symlink
  std::shared_ptr<const UniqueFd> dir;    // held directory to create it in (see image_file.h); absent: opened from the path
  std::optional<FileOwner> owner;         // who the file is given to before it has a name; absent: the daemon's user
  uint64_t chunk_size = 4 * 1024 * 1024;  // bytes a thread reads at a time: a power of two, 4 KiB to 64 MiB
  unsigned threads = 0;                   // 0 = one per core
};

struct RawWriteResult {
  uint64_t size_bytes = 0;     // the file's size: source.size()
  uint64_t bytes_written = 0;  // data written
  uint64_t zero_bytes = 0;     // left as holes; the two add up to size_bytes
};

// The source is read from `threads` threads at once, at offsets that are multiples of
// chunk_size, each read a whole chunk except at the end. Progress in bytes of the source.
// Durable (file and directory fsynced) when it returns; a failure or cancellation leaves no
// new file. Throws Error (FileExists if image_path exists).
RawWriteResult write_raw_from_source(const BlockSource& source, const RawWriteParams& params, JobControl& control,
                                     const ProgressFn& progress);

}  // namespace blocksnap
