#include "volume/written_count.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "io/file_io.h"
#include "io/open_regular.h"
#include "io/unique_fd.h"

namespace blocksnap {

namespace {

constexpr uint64_t kPiecesPerV1Granule = kCowGranuleSizeV1 / kCowGranuleSize;

// Pieces counted at once from files: 8 Mi pieces (32 GiB of disk), 1 MiB of version 2 bitmap.
constexpr uint64_t kChunkPieces = uint64_t{8} << 20;
static_assert(kChunkPieces % (8 * kPiecesPerV1Granule) == 0, "a chunk starts on a byte of a version 1 bitmap");

uint64_t low_bits(uint64_t n) { return n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1; }

struct MapFile {
  std::string path;
  UniqueFd fd;
  CowMapHeader header;
};

// Whether bytes [begin, end) of the file hold any data (not only a hole).
bool has_data(const MapFile& m, uint64_t begin, uint64_t end) {
  const off_t at = ::lseek(m.fd.get(), static_cast<off_t>(begin), SEEK_DATA);
  if (at < 0) {
    if (errno == ENXIO) return false;  // only a hole from `begin` on
    return true;                       // SEEK_DATA not supported: read it
  }
  return static_cast<uint64_t>(at) < end;
}

}  // namespace

uint64_t written_bytes_of(uint64_t pieces, bool last_set, uint64_t size) {
  uint64_t bytes = pieces * kCowGranuleSize;
  // pieces > 0: an open volume's last bit may be visible before its piece is counted.
  if (last_set && pieces > 0 && size % kCowGranuleSize != 0) bytes -= kCowGranuleSize - size % kCowGranuleSize;
  return bytes;
}

uint64_t written_pieces(LayerStack layers, uint64_t size) {
  const uint64_t pieces = cow_piece_count(size);
  if (layers.empty()) return 0;
  if (layers.size() == 1) {
    const CowMap& m = layers[0]->map;
    if (m.granule_size() == kCowGranuleSize) return m.set_count();
    // A version 1 granule at the end may reach past the disk: those pieces are not the disk's.
    uint64_t n = m.set_count() * kPiecesPerV1Granule;
    if (m.granules() > 0 && m.test(m.granules() - 1)) n -= m.granules() * kPiecesPerV1Granule - pieces;
    return n;
  }
  uint64_t n = 0;
  const uint64_t words = (pieces + 63) / 64;
  for (uint64_t w = 0; w < words; ++w) {
    uint64_t word = 0;
    for (const auto& l : layers) word |= l->map.piece_word(w);
    if (w + 1 == words) word &= low_bits(pieces - w * 64);
    n += static_cast<uint64_t>(std::popcount(word));
  }
  return n;
}

uint64_t pieces_added(const CowMap& top, LayerStack below, uint64_t g, uint64_t size) {
  const uint64_t per = top.granule_size() / kCowGranuleSize;
  const uint64_t first = g * per;
  const uint64_t end = std::min(cow_piece_count(size), first + per);
  uint64_t n = 0;
  for (uint64_t p = first; p < end; ++p)
    if (layer_at(below, p * kCowGranuleSize) < 0) ++n;
  return n;
}

uint64_t written_bytes_of_maps(const std::vector<std::string>& map_paths, uint64_t size) {
  std::vector<MapFile> maps;
  for (const std::string& path : map_paths) {
    // O_NONBLOCK: a FIFO under the map's name must not hang the open (io/open_regular.h).
    UniqueFd fd(open_retry(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
    if (!fd) {
      if (errno == ENOENT) continue;
      throw Error::image(errno, "open", path);
    }
    CowMapHeader h = read_cow_map_header(fd.get(), path, size);
    maps.push_back(MapFile{path, std::move(fd), std::move(h)});
  }
  const uint64_t pieces = cow_piece_count(size);
  std::vector<uint64_t> chunk(kChunkPieces / 64);
  std::vector<uint8_t> bytes(kChunkPieces / 8);
  uint64_t set = 0;
  bool last_set = false;
  for (uint64_t c = 0; c < pieces; c += kChunkPieces) {
    const uint64_t n = std::min(kChunkPieces, pieces - c);
    const uint64_t words = (n + 63) / 64;
    bool any = false;  // a range that is a hole in every map costs no pass over its words
    for (const MapFile& m : maps) {
      const uint64_t per = m.header.granule_size / kCowGranuleSize;
      const uint64_t g_begin = c / per;
      const uint64_t g_end = std::min(m.header.granules, (c + n + per - 1) / per);
      const uint64_t b_begin = g_begin / 8;
      const uint64_t b_end = (g_end + 7) / 8;
      if (b_end <= b_begin || !has_data(m, kCowMapHeaderSize + b_begin, kCowMapHeaderSize + b_end)) continue;
      if (!any) std::fill(chunk.begin(), chunk.begin() + static_cast<ptrdiff_t>(words), 0);
      any = true;
      const size_t len = static_cast<size_t>(b_end - b_begin);
      if (read_at(m.fd.get(), bytes.data(), len, kCowMapHeaderSize + b_begin, m.path) != len) {
        Error e(ErrorCode::ImageCorrupt, "layer map " + m.path + " is corrupt: bitmap truncated while reading");
        e.path = m.path;
        throw e;
      }
      if (per == 1) {
        for (size_t i = 0; i < len; ++i) chunk[i / 8] |= uint64_t{bytes[i]} << (8 * (i % 8));
        continue;
      }
      for (size_t i = 0; i < len; ++i) {
        if (bytes[i] == 0) continue;
        for (unsigned b = 0; b < 8; ++b) {
          if (!(bytes[i] & (1u << b))) continue;
          const uint64_t p = (b_begin + i) * 8 * per + b * per - c;  // piece of this granule, in the chunk
          if (p < words * 64) chunk[p / 64] |= low_bits(per) << (p % 64);
        }
      }
    }
    if (!any) continue;
    chunk[words - 1] &= low_bits(n - (words - 1) * 64);
    for (uint64_t w = 0; w < words; ++w) set += static_cast<uint64_t>(std::popcount(chunk[w]));
    if (c + n == pieces) last_set = (chunk[(n - 1) / 64] >> ((n - 1) % 64)) & 1;
  }
  return written_bytes_of(set, last_set, size);
}

}  // namespace blocksnap
