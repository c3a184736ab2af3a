// One layer's granule bitmap (.map file, volume/cow_format.h), held in memory while the volume is
// open and written back page by page at flush.
//
// State: one atomic bit per granule (4 KiB; 64 KiB in a version 1 map), set = the granule's
// content is in the layer's .data, in memory that costs only the pages holding a set bit
// (volume/zeroed_memory.h); and per 4 KiB bitmap page a dirty flag, a count of set() calls under
// way and whether it holds a set bit. Opening reads only the bitmap's data extents (a clear
// bitmap is a hole in the file), so a fresh layer of a 15 TiB disk opens without reading or
// holding its 480 MiB of zeros. A bit only ever goes 0 -> 1 during a layer's life, so readers
// need no lock: seeing a stale 0 means reading the layer below, which is what the
// not-yet-acknowledged write would have replaced anyway.
//
// A writer that finds a granule's bit set writes its data there and is acknowledged without
// touching the map, even while the set() that made the bit is still under way. A flush after that
// acknowledgement must still write the bit: the count makes take_dirty_pages() copy a page whose
// set() has made its bit visible but not yet marked the page dirty.
//
// Durability is the volume's job (cow_volume.h): it copies the dirty pages, makes the .data file
// durable, and only then writes the copies here, so a bit on disk never points at data that is not.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "io/unique_fd.h"
#include "volume/cow_format.h"
#include "volume/zeroed_memory.h"

namespace blocksnap {

class CowMap {
 public:
  // Creates `path` (O_EXCL, never through a symlink, 0600) with the header and an all-clear
  // bitmap, fsynced, in map `version` (the current one; version 1 only to test reading disks
  // made before). Throws FileExists, InvalidArgument (bad layer id or version), NoSpace, IOError.
  static void create(const std::string& path, uint64_t virtual_size, const std::string& layer_id, uint16_t version = kCowMapVersion);

  // Opens and validates the header and the file size against `virtual_size`. A malformed map is
  // ImageCorrupt naming the file and the field. `writable` opens it for write-back.
  CowMap(const std::string& path, uint64_t virtual_size, bool writable);

  const std::string& path() const noexcept { return path_; }
  const std::string& layer_id() const noexcept { return layer_id_; }
  uint64_t granules() const noexcept { return granules_; }
  uint32_t granule_size() const noexcept { return granule_size_; }
  // The granule holding byte `pos` of the disk.
  uint64_t granule_of(uint64_t pos) const noexcept { return pos >> granule_shift_; }

  bool test(uint64_t g) const noexcept {
    return (words_[g / 64].load(std::memory_order_acquire) >> (g % 64)) & 1;
  }
  // Whether the granule holding byte `pos` is set.
  bool test_at(uint64_t pos) const noexcept { return test(granule_of(pos)); }
  // Sets the bit of granule g (whose data the caller has already written) and marks its page dirty.
  // True when this call set it (it was clear): of concurrent calls for one granule, exactly one.
  bool set(uint64_t g) noexcept;
  // Bits set, kept as they are set: what the layer holds, without a pass over the bitmap.
  uint64_t set_count() const noexcept { return set_count_.load(std::memory_order_acquire); }
  // Bits 0..63 of the word are 4 KiB pieces 64w..64w+63 of the disk (kCowGranuleSize) set in this
  // map: the word itself in a version 2 map, each 64 KiB granule spread over its 16 pieces in
  // version 1, so that maps of both versions can be ORed.
  uint64_t piece_word(uint64_t w) const noexcept;
  // Whether any granule of [first, end) is set: a word at a time, skipping the bitmap pages that
  // hold no set bit.
  bool any_set(uint64_t first, uint64_t end) const noexcept;

  struct PageCopy {
    uint64_t page;
    std::vector<uint8_t> bytes;
  };
  // Flush step 1: copies of the dirty bitmap pages, their dirty flags cleared.
  std::vector<PageCopy> take_dirty_pages();
  // Flush step 3: writes the copies in place and fdatasyncs the map. Throws IOError / NoSpace.
  void write_pages(const std::vector<PageCopy>& pages);

 private:
  friend struct CowMapTestAccess;  // puts a map in the state between a set()'s two steps

  std::string path_;
  std::string layer_id_;
  UniqueFd fd_;
  uint64_t granules_ = 0;
  uint32_t granule_size_ = 0;
  unsigned granule_shift_ = 0;
  uint64_t bitmap_bytes_ = 0;
  // Bitmap words, as the file stores them (little-endian).
  ZeroedWords words_;
  std::vector<std::atomic<bool>> dirty_;
  std::vector<std::atomic<uint32_t>> setting_;
  // By bitmap page: it holds a set bit. Set before the bit: any_set sees every set() that returned.
  std::vector<std::atomic<bool>> populated_;
  std::atomic<uint64_t> set_count_{0};
};

// The header of a map file at `fd`, checked against `virtual_size` (ImageCorrupt naming the field).
struct CowMapHeader {
  uint32_t granule_size = 0;
  uint64_t granules = 0;
  std::string layer_id;
};
CowMapHeader read_cow_map_header(int fd, const std::string& path, uint64_t virtual_size);

// 1..32 characters of [A-Za-z0-9._-]: what the engine's ids are, and safe as a file name.
bool is_valid_layer_id(const std::string& id);

}  // namespace blocksnap
