#include "volume/cow_map.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "io/extents.h"
#include "io/file_io.h"
#include "io/open_regular.h"
#include "volume/cow_format.h"

namespace blocksnap {

static_assert(std::endian::native == std::endian::little, "bitmap words are stored as little-endian bytes");

namespace {

template <typename T>
void put_le(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

template <typename T>
T get_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

[[noreturn]] void corrupt(const std::string& path, const std::string& why) {
  Error e(ErrorCode::ImageCorrupt, "layer map " + path + " is corrupt: " + why);
  e.path = path;
  throw e;
}

void check_field(const std::string& path, const char* field, uint64_t got, uint64_t want) {
  if (got != want)
    corrupt(path, std::string("field '") + field + "' is " + std::to_string(got) + ", expected " + std::to_string(want));
}

}  // namespace

bool is_valid_layer_id(const std::string& id) {
  if (id.empty() || id.size() > kCowLayerIdSize) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void CowMap::create(const std::string& path, uint64_t virtual_size, const std::string& layer_id, uint16_t version) {
  if (!is_valid_layer_id(layer_id))
    throw Error(ErrorCode::InvalidArgument, "layer id must be 1 to 32 characters of [A-Za-z0-9._-]");
  const uint32_t granule_size = cow_granule_size_of(version);
  if (granule_size == 0) throw Error(ErrorCode::InvalidArgument, "unknown layer map version " + std::to_string(version));
  UniqueFd fd(open_retry(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw Error::image(errno, "open", path);
  try {
    const uint64_t granules = cow_granule_count(virtual_size, granule_size);
    uint8_t header[kCowMapHeaderSize] = {};
    std::memcpy(header + kCowMagicOffset, kCowMapMagic, sizeof kCowMapMagic);
    put_le<uint16_t>(header + kCowVersionOffset, version);
    put_le<uint32_t>(header + kCowHeaderSizeOffset, kCowMapHeaderSize);
    put_le<uint32_t>(header + kCowGranuleSizeOffset, granule_size);
    put_le<uint64_t>(header + kCowVirtualSizeOffset, virtual_size);
    put_le<uint64_t>(header + kCowGranuleCountOffset, granules);
    std::memcpy(header + kCowLayerIdOffset, layer_id.data(), layer_id.size());
    write_at(fd.get(), header, sizeof header, 0, path);
    // The clear bitmap is a hole: it reads as zeros and costs no space until bits are written.
    if (::ftruncate(fd.get(), static_cast<off_t>(kCowMapHeaderSize + cow_bitmap_bytes(granules))) != 0)
      throw Error::system(errno, "ftruncate", path);
    fsync_file(fd.get(), path);
  } catch (...) {
    ::unlink(path.c_str());
    throw;
  }
}

CowMapHeader read_cow_map_header(int fd, const std::string& path, uint64_t virtual_size) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error::system(errno, "fstat", path);
  if (!S_ISREG(st.st_mode)) corrupt(path, "not a regular file");
  clear_nonblock(fd);

  uint8_t header[kCowMapHeaderSize];
  if (read_at(fd, header, sizeof header, 0, path) != sizeof header)
    corrupt(path, "file of " + std::to_string(st.st_size) + " bytes is shorter than the header");
  if (std::memcmp(header + kCowMagicOffset, kCowMapMagic, sizeof kCowMapMagic) != 0) corrupt(path, "field 'magic' is not BSCOWMAP");
  CowMapHeader h;
  const uint16_t version = get_le<uint16_t>(header + kCowVersionOffset);
  h.granule_size = cow_granule_size_of(version);
  if (h.granule_size == 0)
    corrupt(path, "field 'version' is " + std::to_string(version) + ", expected " + std::to_string(kCowMapVersion1) + " or " + std::to_string(kCowMapVersion));
  check_field(path, "flags", get_le<uint16_t>(header + kCowFlagsOffset), 0);
  check_field(path, "header size", get_le<uint32_t>(header + kCowHeaderSizeOffset), kCowMapHeaderSize);
  check_field(path, "granule size", get_le<uint32_t>(header + kCowGranuleSizeOffset), h.granule_size);
  check_field(path, "reserved", get_le<uint32_t>(header + kCowReservedOffset), 0);
  check_field(path, "virtual size", get_le<uint64_t>(header + kCowVirtualSizeOffset), virtual_size);
  h.granules = cow_granule_count(virtual_size, h.granule_size);
  check_field(path, "granule count", get_le<uint64_t>(header + kCowGranuleCountOffset), h.granules);
  const char* id = reinterpret_cast<const char*>(header + kCowLayerIdOffset);
  h.layer_id.assign(id, strnlen(id, kCowLayerIdSize));
  for (size_t i = kCowLayerIdOffset + h.layer_id.size(); i < kCowMapHeaderSize; ++i)
    if (header[i] != 0) corrupt(path, "byte " + std::to_string(i) + " of the header is not zero");
  if (!is_valid_layer_id(h.layer_id)) corrupt(path, "field 'layer id' is not 1 to 32 characters of [A-Za-z0-9._-]");
  check_field(path, "file size", static_cast<uint64_t>(st.st_size), kCowMapHeaderSize + cow_bitmap_bytes(h.granules));
  return h;
}

CowMap::CowMap(const std::string& path, uint64_t virtual_size, bool writable) : path_(path) {
  // O_NONBLOCK: a FIFO under the map's name must not hang the open (io/open_regular.h).
  fd_.reset(open_retry(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd_) throw Error::image(errno, "open", path);
  CowMapHeader h = read_cow_map_header(fd_.get(), path, virtual_size);
  granule_size_ = h.granule_size;
  granule_shift_ = static_cast<unsigned>(std::countr_zero(granule_size_));
  granules_ = h.granules;
  layer_id_ = std::move(h.layer_id);

  bitmap_bytes_ = cow_bitmap_bytes(granules_);
  words_ = ZeroedWords((bitmap_bytes_ + 7) / 8);
  dirty_ = std::vector<std::atomic<bool>>((bitmap_bytes_ + kCowMapPageSize - 1) / kCowMapPageSize);
  setting_ = std::vector<std::atomic<uint32_t>>(dirty_.size());
  populated_ = std::vector<std::atomic<bool>>(dirty_.size());
  // Only the data extents: holes read as zeros, which the words already are. A chunk at a time,
  // storing only words with a bit set, so memory grows with the bits and not the bitmap.
  constexpr uint64_t kChunk = uint64_t{1} << 20;
  std::vector<uint8_t> chunk;
  uint64_t set = 0;
  const ExtentMap extents = ExtentMap::scan(fd_.get(), kCowMapHeaderSize + bitmap_bytes_, path);
  for (const Extent& e : extents.overlapping(kCowMapHeaderSize, kCowMapHeaderSize + bitmap_bytes_)) {
    // In bitmap bytes, widened to whole words (the bytes added lie in a hole or in the extent).
    const uint64_t begin = (std::max<uint64_t>(e.begin, kCowMapHeaderSize) - kCowMapHeaderSize) / 8 * 8;
    const uint64_t end = std::min(bitmap_bytes_, (e.end - kCowMapHeaderSize + 7) / 8 * 8);
    for (uint64_t at = begin; at < end; at += kChunk) {
      const uint64_t n = std::min(kChunk, end - at);
      chunk.assign((n + 7) / 8 * 8, 0);
      if (read_at(fd_.get(), chunk.data(), n, kCowMapHeaderSize + at, path) != n) corrupt(path, "bitmap truncated while reading");
      for (uint64_t k = 0; k < n; k += 8) {
        const uint64_t word = get_le<uint64_t>(chunk.data() + k);
        if (word == 0) continue;
        const uint64_t w = (at + k) / 8;
        populated_[w * 8 / kCowMapPageSize].store(true, std::memory_order_relaxed);
        words_[w].store(word, std::memory_order_relaxed);
        set += static_cast<uint64_t>(std::popcount(word));
      }
    }
  }
  if (granules_ % 64 != 0 && !words_.empty() && (words_.back().load() >> (granules_ % 64)) != 0)
    corrupt(path, "bits are set past the last granule");
  set_count_.store(set, std::memory_order_release);
}

bool CowMap::set(uint64_t g) noexcept {
  const uint64_t bit = uint64_t{1} << (g % 64);
  // Already set: whoever set it counted itself in before the bit could be seen (below), so a
  // flush after this caller's acknowledgement writes the bit even if that set() is not done.
  if (words_[g / 64].load(std::memory_order_acquire) & bit) return false;
  const size_t page = (g / 8) / kCowMapPageSize;
  populated_[page].store(true, std::memory_order_release);
  setting_[page].fetch_add(1, std::memory_order_acq_rel);
  const bool was_clear = (words_[g / 64].fetch_or(bit, std::memory_order_acq_rel) & bit) == 0;
  if (was_clear) set_count_.fetch_add(1, std::memory_order_acq_rel);
  // After the bit: a flush that clears the flag before this store copies the page after it too.
  dirty_[page].store(true, std::memory_order_release);
  setting_[page].fetch_sub(1, std::memory_order_release);
  return was_clear;
}

uint64_t CowMap::piece_word(uint64_t w) const noexcept {
  if (granule_size_ == kCowGranuleSize) return w < words_.size() ? words_[w].load(std::memory_order_acquire) : 0;
  // Version 1: 16 pieces per granule, so word w holds granules 4w..4w+3.
  static_assert(kCowGranuleSizeV1 / kCowGranuleSize == 16);
  const uint64_t g = w * 4;
  if (g / 64 >= words_.size()) return 0;
  const uint64_t nibble = (words_[g / 64].load(std::memory_order_acquire) >> (g % 64)) & 0xF;
  uint64_t out = 0;
  for (unsigned b = 0; b < 4; ++b)
    if (nibble & (1u << b)) out |= uint64_t{0xFFFF} << (16 * b);
  return out;
}

bool CowMap::any_set(uint64_t first, uint64_t end) const noexcept {
  constexpr uint64_t kPageGranules = kCowMapPageSize * 8;
  end = std::min(end, granules_);
  while (first < end) {
    if (!populated_[first / kPageGranules].load(std::memory_order_acquire)) {
      first = (first / kPageGranules + 1) * kPageGranules;
      continue;
    }
    const uint64_t w = first / 64;
    const uint64_t lo = first % 64;
    const uint64_t hi = std::min<uint64_t>(64, end - w * 64);
    const uint64_t mask = (hi == 64 ? ~uint64_t{0} : (uint64_t{1} << hi) - 1) & (~uint64_t{0} << lo);
    if (words_[w].load(std::memory_order_acquire) & mask) return true;
    first = (w + 1) * 64;
  }
  return false;
}

std::vector<CowMap::PageCopy> CowMap::take_dirty_pages() {
  std::vector<PageCopy> pages;
  for (size_t p = 0; p < dirty_.size(); ++p) {
    // The count first: a set() seen finished here has already marked its page dirty. One still
    // under way may have made its bit visible to an acknowledged write, so its page is copied
    // now (with whatever bits it has) and again at the next flush.
    const bool setting = setting_[p].load(std::memory_order_acquire) != 0;
    if (!dirty_[p].exchange(false, std::memory_order_acq_rel) && !setting) continue;
    const uint64_t begin = p * kCowMapPageSize;
    const uint64_t len = std::min<uint64_t>(kCowMapPageSize, bitmap_bytes_ - begin);
    PageCopy copy{p, std::vector<uint8_t>(kCowMapPageSize / 8 * 8, 0)};
    for (uint64_t w = 0; w * 8 < len; ++w) put_le<uint64_t>(copy.bytes.data() + w * 8, words_[begin / 8 + w].load(std::memory_order_acquire));
    copy.bytes.resize(len);
    pages.push_back(std::move(copy));
  }
  return pages;
}

void CowMap::write_pages(const std::vector<PageCopy>& pages) {
  if (pages.empty()) return;
  for (const PageCopy& p : pages) write_at(fd_.get(), p.bytes.data(), p.bytes.size(), kCowMapHeaderSize + p.page * kCowMapPageSize, path_);
  if (::fdatasync(fd_.get()) != 0) throw Error::system(errno, "fdatasync", path_);
}

}  // namespace blocksnap
