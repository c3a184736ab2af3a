#include "formats/block_source.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "core/image_file.h"
#include "formats/qcow2_reader.h"
#include "io/data_read.h"
#include "io/direct_io.h"
#include "io/extents.h"
#include "io/file_io.h"
#include "io/page_cache.h"

namespace blocksnap {

namespace {

// A raw image: its data extents are mapped once with SEEK_DATA/SEEK_HOLE, so a block wholly in a
// hole is ZERO without a read and a partly covered block reads only its data ranges.
class RawSource final : public BlockSource {
 public:
  RawSource(const std::string& path, ImageFile image)
      : path_(path), image_(std::move(image)), cache_(image_.fd.get()), direct_(open_direct_twin(image_.fd.get())) {
    ::posix_fadvise(image_.fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    extents_ = ExtentMap::scan(image_.fd.get(), image_.size, path_);
  }

  uint64_t size() const override { return image_.size; }

  SourceRead read(uint64_t offset, size_t len, uint8_t* buf) const override { return read_in_pieces(offset, len, buf, FilledFn{}); }

  SourceRead read_in_pieces(uint64_t offset, size_t len, uint8_t* buf, const FilledFn& filled) const override {
    const uint64_t end = offset + len;
    auto pieces = extents_.overlapping(offset, end);
    if (pieces.empty()) return {0, true};
    const std::vector<uint8_t> cached_before = cache_.before_read(offset, len);
    SourceRead r;
    r.bytes_read =
        read_data_range(image_.fd.get(), direct_ ? direct_.get() : -1, pieces, offset, len, buf, cached_before, path_, filled);
    cache_.after_read(offset, len, cached_before);
    return r;
  }

  std::optional<InPlaceHash> hash_cached(uint64_t offset, size_t len) const override {
    if (!can_hash_cached(offset, len)) return std::nullopt;
    return hash_in_place(image_.fd.get(), offset, len);
  }

  bool can_hash_cached(uint64_t offset, size_t len) const override {
    // Only a block wholly inside one data extent: a mapping reads holes too, and would have to
    // fault their zero pages in.
    const auto pieces = extents_.overlapping(offset, offset + len);
    if (pieces.size() != 1 || pieces[0].begin > offset || pieces[0].end < offset + len) return false;
    return cache_.wholly_resident(offset, len);
  }

  bool reads_direct() const override { return static_cast<bool>(direct_); }

  uint64_t data_bytes(uint64_t offset, uint64_t len) const override { return extents_.data_bytes(offset, offset + len); }

  void will_need(uint64_t offset, size_t len) const override {
    // Direct reads want nothing brought into the cache ahead of them: the disk is kept busy by
    // the scan threads' own reads instead.
    if (direct_) return;
    if (offset < image_.size && !extents_.overlapping(offset, offset + len).empty()) {
      cache_.touch(offset, len);
      ::posix_fadvise(image_.fd.get(), static_cast<off_t>(offset), static_cast<off_t>(len), POSIX_FADV_WILLNEED);
    }
  }

 private:
  std::string path_;
  ImageFile image_;
  ExtentMap extents_;
  // Pages this source reads are dropped again unless they were cached before (io/page_cache.h).
  mutable PageCacheKeeper cache_;
  UniqueFd direct_;  // empty when direct reads are not possible here
};

}  // namespace

std::unique_ptr<BlockSource> open_raw_source(const std::string& path) { return std::make_unique<RawSource>(path, open_image_for_read(path)); }

std::unique_ptr<BlockSource> open_raw_source(ImageFile image, const std::string& path) {
  return std::make_unique<RawSource>(path, std::move(image));
}

std::unique_ptr<BlockSource> open_block_source(const std::string& path, ImageFormat format, const std::vector<CheckedBacking>* checked_backing,
                                               const std::optional<FileIdentity>& image_id) {
  if (format == ImageFormat::Qcow2) {
    Qcow2OpenOptions options;
    options.checked_backing = checked_backing;
    options.image_id = image_id;
    return open_qcow2_source(path, options);
  }
  return std::make_unique<RawSource>(path, open_image_checked(path, image_id));  // the disk itself: see open_image_checked
}

}  // namespace blocksnap
