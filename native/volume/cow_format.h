// The frozen format of a copy-on-write layer's .map file (src/store/cow-format.ts holds the same
// constants; test/store/cow-format.test.ts asserts they agree). Any change is a version bump.
//
//   0   8  magic "BSCOWMAP"
//   8   2  format version (2; 1 is still read)
//   10  2  flags (0; others reserved)
//   12  4  header size (4096)
//   16  4  granule size (4096 in version 2, 65536 in version 1)
//   20  4  reserved (0)
//   24  8  virtual size of the disk in bytes
//   32  8  granule count (ceil(virtual size / granule size))
//   40  32 layer id (ASCII, NUL-padded)
//   72  .. 4095 zero
//   4096   bitmap: granule g is bit (g % 8) of byte g / 8; set = "its content is in this layer's .data"
// All integers little-endian. The .data file beside it is sparse, of the virtual size, with each
// granule at its guest offset; a hole in it reads as zeros.
//
// Version 2 changed only the granule, from 64 KiB to 4 KiB: a guest's 4 KiB write then fills a
// granule whole and never reads the content below it (version 1 read and verified the other
// 60 KiB of the granule from the base first). Layers are created in version 2; version 1 layers
// of disks made before are read and written as they are, in the same stack as version 2 ones.
#pragma once

#include <cstddef>
#include <cstdint>

namespace blocksnap {

inline constexpr char kCowMapMagic[8] = {'B', 'S', 'C', 'O', 'W', 'M', 'A', 'P'};
inline constexpr uint16_t kCowMapVersion = 2;
inline constexpr uint32_t kCowMapHeaderSize = 4096;
inline constexpr uint32_t kCowGranuleSize = 4096;
inline constexpr uint16_t kCowMapVersion1 = 1;
inline constexpr uint32_t kCowGranuleSizeV1 = 64 * 1024;
// The largest granule of any version: what a copy-up's buffer must hold.
inline constexpr uint32_t kCowMaxGranuleSize = 64 * 1024;
static_assert(kCowMaxGranuleSize >= kCowGranuleSize && kCowMaxGranuleSize >= kCowGranuleSizeV1);
inline constexpr size_t kCowLayerIdSize = 32;

inline constexpr size_t kCowMagicOffset = 0;
inline constexpr size_t kCowVersionOffset = 8;
inline constexpr size_t kCowFlagsOffset = 10;
inline constexpr size_t kCowHeaderSizeOffset = 12;
inline constexpr size_t kCowGranuleSizeOffset = 16;
inline constexpr size_t kCowReservedOffset = 20;
inline constexpr size_t kCowVirtualSizeOffset = 24;
inline constexpr size_t kCowGranuleCountOffset = 32;
inline constexpr size_t kCowLayerIdOffset = 40;
inline constexpr size_t kCowHeaderUsedSize = 72;  // bytes from here to the header's end are zero
static_assert(kCowLayerIdOffset + kCowLayerIdSize == kCowHeaderUsedSize);
static_assert(sizeof kCowMapMagic == kCowVersionOffset - kCowMagicOffset);

// The bitmap is written back in pages of this size: the unit a torn write can damage.
inline constexpr size_t kCowMapPageSize = 4096;

// The granule of a map version, or 0 for a version this build does not know.
inline constexpr uint32_t cow_granule_size_of(uint16_t version) {
  return version == kCowMapVersion ? kCowGranuleSize : version == kCowMapVersion1 ? kCowGranuleSizeV1 : 0;
}

inline constexpr uint64_t cow_granule_count(uint64_t virtual_size, uint32_t granule_size = kCowGranuleSize) {
  return (virtual_size + granule_size - 1) / granule_size;
}

inline constexpr uint64_t cow_bitmap_bytes(uint64_t granules) { return (granules + 7) / 8; }

}  // namespace blocksnap
