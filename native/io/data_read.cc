#include "io/data_read.h"

#include <algorithm>
#include <cstring>

#include "io/direct_io.h"
#include "io/file_io.h"
#include "io/page_cache.h"

namespace blocksnap {

uint64_t read_data_range(int fd, int direct, std::span<const Extent> pieces, uint64_t offset, size_t len, uint8_t* buf,
                         const std::vector<uint8_t>& cached_before, const std::string& path) {
  const uint64_t end = offset + len;
  const bool fully_data = pieces.size() == 1 && pieces[0].begin <= offset && pieces[0].end >= end;
  if (!fully_data) std::memset(buf, 0, len);
  // A range partly cached reads through the cache, where those pages cost nothing.
  const bool go_direct = direct >= 0 && !cached_before.empty() && resident_count(cached_before) == 0;
  uint64_t read = 0;
  for (const Extent& e : pieces) {
    const uint64_t b = std::max(e.begin, offset), f = std::min(e.end, end);
    if (b >= f) continue;
    const size_t want = static_cast<size_t>(f - b);
    size_t got = 0;
    if (!go_direct || !read_direct(direct, buf + (b - offset), want, b, path, got)) got = read_at(fd, buf + (b - offset), want, b, path);
    // The file shrank since its extents were mapped: what is gone reads as zeros, like a hole.
    if (got < want) std::memset(buf + (b - offset) + got, 0, want - got);
    read += got;
  }
  return read;
}

}  // namespace blocksnap
