#include "io/extents.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/error.h"

namespace blocksnap {

namespace {

enum class Seek { Found, PastEnd, Unsupported };

// lseek(SEEK_DATA/SEEK_HOLE) with its two non-errors: ENXIO means "nothing at or after offset"
// (no more data, or offset beyond end of file), EINVAL/EOPNOTSUPP mean "not supported here".
Seek seek(int fd, uint64_t offset, int whence, uint64_t& result, const std::string& path) {
  off_t r = ::lseek(fd, static_cast<off_t>(offset), whence);
  if (r >= 0) {
    result = static_cast<uint64_t>(r);
    return Seek::Found;
  }
  if (errno == ENXIO) return Seek::PastEnd;
  if (errno == EINVAL || errno == EOPNOTSUPP) return Seek::Unsupported;
  throw Error::system(errno, whence == SEEK_DATA ? "lseek(SEEK_DATA)" : "lseek(SEEK_HOLE)", path);
}

}  // namespace

ExtentMap ExtentMap::all_data(uint64_t size) {
  ExtentMap map;
  if (size > 0) map.extents_.push_back({0, size});
  return map;
}

ExtentMap ExtentMap::scan(int fd, uint64_t size, const std::string& path) {
  ExtentMap map;
  uint64_t offset = 0;
  while (offset < size) {
    uint64_t data = 0;
    Seek s = seek(fd, offset, SEEK_DATA, data, path);
    if (s == Seek::PastEnd || (s == Seek::Found && data >= size)) break;
    if (s == Seek::Unsupported) {
      map.extents_.push_back({offset, size});
      break;
    }
    uint64_t hole = size;
    // The file can shrink under us (ENXIO); what we were told is still data up to `size`.
    if (seek(fd, data, SEEK_HOLE, hole, path) != Seek::Found) hole = size;
    hole = std::min(hole, size);
    if (hole <= data) break;
    map.extents_.push_back({data, hole});
    offset = hole;
  }
  return map;
}

std::span<const Extent> ExtentMap::overlapping(uint64_t begin, uint64_t end) const noexcept {
  auto first = std::upper_bound(extents_.begin(), extents_.end(), begin,
                                [](uint64_t off, const Extent& e) { return off < e.end; });
  auto last = first;
  while (last != extents_.end() && last->begin < end) ++last;
  return {first, last};
}

uint64_t ExtentMap::data_bytes() const noexcept {
  uint64_t n = 0;
  for (const Extent& e : extents_) n += e.end - e.begin;
  return n;
}

uint64_t ExtentMap::data_bytes(uint64_t begin, uint64_t end) const noexcept {
  uint64_t n = 0;
  for (const Extent& e : overlapping(begin, end)) n += std::min(e.end, end) - std::max(e.begin, begin);
  return n;
}

bool range_has_data(int fd, uint64_t offset, uint64_t len, const std::string& path) {
  uint64_t data = 0;
  switch (seek(fd, offset, SEEK_DATA, data, path)) {
    case Seek::Found: return data < offset + len;
    case Seek::PastEnd: return false;
    case Seek::Unsupported: return true;
  }
  return true;
}

}  // namespace blocksnap
