// The guest-visible content of a disk image, read by range: what the scanner hashes. A raw file
// is its own content; a qcow2 file maps it through its tables and backing chain. Every source
// answers "this range is all zero" without reading whenever its metadata says so (holes,
// unallocated or zero clusters), which is what keeps snapshots of sparse disks cheap.
//
// Sources are immutable once opened and read with pread only, so one source serves all scan
// threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/hash_in_place.h"
#include "core/image_file.h"
#include "io/data_read.h"

namespace blocksnap {

enum class ImageFormat { Raw, Qcow2 };

struct SourceRead {
  uint64_t bytes_read = 0;  // bytes read from files (data, compressed payload, backing files)
  bool zero = false;        // known all-zero from metadata; the buffer was then left untouched
};

class BlockSource {
 public:
  virtual ~BlockSource() = default;
  // Guest-visible size in bytes.
  virtual uint64_t size() const = 0;
  // Fills buf[0, len) with the content at `offset` (offset + len <= size()), unless the result
  // says `zero`. Throws Error.
  virtual SourceRead read(uint64_t offset, size_t len, uint8_t* buf) const = 0;
  // read(), telling `filled` as buf[0, n) becomes final (n grows and ends at len), so that the
  // caller can hash each piece while it is still in the CPU's cache (core/hash_as_read.h). Not
  // called when the result says `zero`. Default: read(), then filled(len).
  virtual SourceRead read_in_pieces(uint64_t offset, size_t len, uint8_t* buf, const FilledFn& filled) const {
    const SourceRead r = read(offset, len, buf);
    if (!r.zero) filled(len);
    return r;
  }
  // read(), for a caller that holds `known`, another source's content of the same range (null:
  // all zeros), and keeps only what differs from it (a rollback's image falls through to its
  // backing file wherever the two agree). A source that can tell without reading which of its
  // pieces hold exactly `known` there (a store block, by its digest) copies those from `known`
  // instead of reading them. Default: read().
  virtual SourceRead read_knowing(uint64_t offset, size_t len, uint8_t* buf, const uint8_t* /*known*/) const {
    return read(offset, len, buf);
  }
  // The bytes of [offset, offset + len) a read may have to read, known without reading: what a
  // scan's progress counts, so that it follows the reading and not the virtual size. A raw
  // file's data extents, a qcow2 image's allocated clusters (through its backing chain where it
  // leaves them unallocated), a snapshot's blocks that are not ZERO; default: all of them.
  virtual uint64_t data_bytes(uint64_t /*offset*/, uint64_t len) const { return len; }
  // A hint that [offset, offset + len) will be read soon. Default: nothing.
  virtual void will_need(uint64_t /*offset*/, size_t /*len*/) const {}
  // True when uncached ranges are read past the page cache (io/direct_io.h): no read-ahead
  // then works for the reader, which must keep the disk busy with its own reads. Default: false.
  virtual bool reads_direct() const { return false; }
  // The content at `offset` hashed where it lies when it is wholly in the page cache and the
  // source can do so without a copy (core/hash_in_place.h: such a digest only recognises content,
  // it never names a block to store). nullopt otherwise, and read() must be used. Default: nullopt.
  virtual std::optional<InPlaceHash> hash_cached(uint64_t /*offset*/, size_t /*len*/) const { return std::nullopt; }
  // Whether hash_cached would hash [offset, offset + len) now (without hashing it): a read of it
  // then comes from the page cache too, so the two paths can be timed against each other.
  virtual bool can_hash_cached(uint64_t /*offset*/, size_t /*len*/) const { return false; }
};

struct CheckedBacking;

// Opens `path` as `format`. A qcow2 source opens its backing chain too: exactly `checked_backing`
// when given (see Qcow2OpenOptions), else by the names in the headers. Throws Error
// (ImageNotFound, NotAnImage, ImageCorrupt, UnsupportedFormat, ...). With `image_id`, the file
// opened at `path` must be that one (ImageReplaced otherwise: require_identity).
std::unique_ptr<BlockSource> open_block_source(const std::string& path, ImageFormat format,
                                               const std::vector<CheckedBacking>* checked_backing = nullptr,
                                               const std::optional<FileIdentity>& image_id = std::nullopt);

// A raw file; exposed for qcow2 backing files and tests.
std::unique_ptr<BlockSource> open_raw_source(const std::string& path);
// A raw file already open (`path` is for messages).
std::unique_ptr<BlockSource> open_raw_source(ImageFile image, const std::string& path);

}  // namespace blocksnap
