// How much of a copy-on-write disk its layers hold since the base: the 4 KiB pieces of the disk
// set in any layer's map (a version 1 map's 64 KiB granule counts as its 16 pieces), as bytes
// (the last piece may be short). A TRIM or WRITE_ZEROES sets bits over a hole in .data, so the
// space the data files take says nothing of this; `disk remove` refuses a disk holding any.
//
// An open volume keeps the count as its bits are set (CowVolume::written_bytes); the files of a
// closed one are counted by written_bytes_of_maps, which reads only the bitmap's data extents.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "volume/cow_layer.h"

namespace blocksnap {

// 4 KiB pieces of a `size`-byte disk.
inline constexpr uint64_t cow_piece_count(uint64_t size) { return cow_granule_count(size, kCowGranuleSize); }

// Pieces set in any of the layers' maps: a single layer is its own count; several are ORed a word
// (256 KiB of disk) at a time.
uint64_t written_pieces(LayerStack layers, uint64_t size);
// Pieces of granule g of `top` that no layer of `below` holds: what setting g adds to the union.
uint64_t pieces_added(const CowMap& top, LayerStack below, uint64_t g, uint64_t size);
// Bytes of `pieces` set pieces of a `size`-byte disk, `last_set` saying whether the last one is.
uint64_t written_bytes_of(uint64_t pieces, bool last_set, uint64_t size);
// The same count from the .map files of a volume that is not open, as they are on disk. Reads only
// the parts of each bitmap that are not holes (a fresh layer's clear bitmap is one), a range of
// the disk at a time. A missing map counts nothing (a layer being removed); a malformed one
// throws ImageCorrupt, an unreadable one IOError.
uint64_t written_bytes_of_maps(const std::vector<std::string>& map_paths, uint64_t size);

}  // namespace blocksnap
