// One overlay layer (its .data and .map files, volume/cow_format.h) and reading through a stack
// of them down to the base: the topmost layer whose bit is set for the granule holding a byte
// holds that byte, a byte set in no layer comes from the base view. Layers of one stack may have
// different granules (4 KiB, and 64 KiB in layers made before map version 2).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/unique_fd.h"
#include "volume/base_view.h"
#include "volume/cow_map.h"

namespace blocksnap {

struct LayerFiles {
  std::string data_path;
  std::string map_path;
};

// Creates both files of an empty layer: .data sparse of `size` bytes, .map with a clear bitmap;
// O_EXCL, never through a symlink, 0600, both fsynced and then their directories, which are
// created (0700, each new level fsynced in its parent) where missing. A failure removes the files
// it created. `map_version` is the current one except in tests of older layers.
// Throws FileExists, InvalidArgument, NoSpace, IOError.
void create_cow_layer(const LayerFiles& files, uint64_t size, const std::string& layer_id, uint16_t map_version = kCowMapVersion);

struct CowLayer {
  // Opens and validates both files (ImageCorrupt naming the file). Only the top is `writable`.
  CowLayer(const LayerFiles& files, uint64_t size, bool writable);

  LayerFiles files;
  UniqueFd data;
  CowMap map;
};

using LayerStack = std::span<const std::shared_ptr<CowLayer>>;  // bottom → top

// Index in `layers` of the topmost layer holding byte `pos`, or -1 for the base.
inline int layer_at(LayerStack layers, uint64_t pos) noexcept {
  for (size_t i = layers.size(); i-- > 0;)
    if (layers[i]->map.test_at(pos)) return static_cast<int>(i);
  return -1;
}

// The finest granule of the stack: where the source of a byte can change. A stack without
// layers never changes source; any step will do.
inline uint64_t stack_step(LayerStack layers) noexcept {
  uint64_t step = kCowMaxGranuleSize;
  for (const auto& l : layers) step = std::min<uint64_t>(step, l->map.granule_size());
  return step;
}

// True when [offset, offset + len) is set in no layer and ZERO in the base: known zero unread.
bool stack_known_zero(LayerStack layers, const BaseView& base, uint64_t offset, uint64_t len);

// Fills out[0, len) with the content at `offset` seen through `layers` and the base. Returns the
// bytes read from files. Throws Error.
uint64_t read_through(LayerStack layers, const BaseView& base, uint64_t offset, size_t len, uint8_t* out);
// read_through for a thread that must not wait for a disk: true when it filled out[0, len) from
// memory and the page cache (BaseView::read_cached); false when it would wait or fail.
bool read_through_cached(LayerStack layers, const BaseView& base, uint64_t offset, size_t len, uint8_t* out) noexcept;
// The same for the granules some layer holds only; the bytes of the others are left as they are
// (out already holds the base there). Returns the bytes read.
uint64_t read_layers(LayerStack layers, uint64_t offset, size_t len, uint8_t* out);

struct VolumeExtent {
  uint64_t length;
  uint32_t flags;  // NBD_STATE_HOLE | NBD_STATE_ZERO (3) or 0
};
inline constexpr uint32_t kExtentHoleZero = 3;

// NBD base:allocation of [offset, offset + len): base ZERO blocks and holes in a layer's .data
// are 3, everything else 0; adjacent runs with the same flags are merged. At most `max_extents`
// (at least 1), the first ones of the range, each whole: the walk stops at the start of the next,
// so a request that takes one extent of a fragmented range costs one extent, not the range.
std::vector<VolumeExtent> stack_extents(LayerStack layers, const BaseView& base, uint64_t offset, uint64_t len,
                                        size_t max_extents);

}  // namespace blocksnap
