// The content of a copy-on-write volume through its bottom k layers and the base, as a
// BlockSource (formats/block_source.h) for scanning and flattening. It holds its own references
// to those layers and to the base view, so a push_layer or rebase of the volume, or writes to
// layers above k, never change what it reads.
#pragma once

#include <memory>
#include <vector>

#include "formats/block_source.h"
#include "volume/base_view.h"
#include "volume/cow_layer.h"

namespace blocksnap {

class VolumeSource final : public BlockSource {
 public:
  VolumeSource(std::vector<std::shared_ptr<CowLayer>> layers, std::shared_ptr<const BaseView> base, uint64_t size)
      : layers_(std::move(layers)), base_(std::move(base)), size_(size) {}

  uint64_t size() const override { return size_; }
  SourceRead read(uint64_t offset, size_t len, uint8_t* buf) const override;
  // Whether cold base blocks can be read past the page cache (io/direct_io.h).
  bool reads_direct() const override;
  const BaseView& base() const noexcept { return *base_; }
  // Prefetches the base block of block i when some of its granules are in no layer, so that a
  // read of it will need the base (BaseView::prefetch).
  void prefetch_base(uint64_t i) const noexcept;
  // Block i's content into frame + 64 (a block file's layout, for BlockWriter::put_framed) with
  // its base block read whole and directly (BaseView::read_whole_direct) and the layers' granules
  // over it, when some granule of it is in no layer; false when it did not, and read() must be
  // used. `frame` as for read_whole_direct. Returns the bytes read through `read`.
  bool read_framed_direct(uint64_t i, uint8_t* frame, uint64_t& bytes_read) const;

 private:
  // True when a read of block i needs the base: some granule of it is in no layer.
  bool needs_base(uint64_t i) const noexcept;

  std::vector<std::shared_ptr<CowLayer>> layers_;
  std::shared_ptr<const BaseView> base_;
  uint64_t size_;
};

}  // namespace blocksnap
