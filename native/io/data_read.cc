#include "io/data_read.h"

#include <algorithm>
#include <cstring>

#include "io/direct_io.h"
#include "io/file_io.h"
#include "io/page_cache.h"

namespace blocksnap {

uint64_t read_data_range(int fd, int direct, std::span<const Extent> pieces, uint64_t offset, size_t len, uint8_t* buf,
                         const std::vector<uint8_t>& cached_before, const std::string& path) {
  return read_data_range(fd, direct, pieces, offset, len, buf, cached_before, path, FilledFn{});
}

uint64_t read_data_range(int fd, int direct, std::span<const Extent> pieces, uint64_t offset, size_t len, uint8_t* buf,
                         const std::vector<uint8_t>& cached_before, const std::string& path, const FilledFn& filled) {
  const uint64_t end = offset + len;
  const bool fully_data = pieces.size() == 1 && pieces[0].begin <= offset && pieces[0].end >= end;
  if (!fully_data) std::memset(buf, 0, len);
  // A range partly cached reads through the cache, where those pages cost nothing.
  const bool go_direct = direct >= 0 && !cached_before.empty() && resident_count(cached_before) == 0;
  // Without a listener, an extent is one read: the fewest system calls.
  const size_t step = filled ? kFillPiece : len;
  uint64_t read = 0;
  for (const Extent& e : pieces) {
    const uint64_t b = std::max(e.begin, offset), f = std::min(e.end, end);
    if (b >= f) continue;
    const size_t want = static_cast<size_t>(f - b);
    uint8_t* const at = buf + (b - offset);
    size_t got = 0;
    if (go_direct && read_direct(direct, at, want, b, path, got)) {
      read += got;
    } else {
      got = 0;
      // Pieces end on multiples of `step` from the range's start, whatever the extent's bounds.
      for (size_t done = 0; done < want;) {
        const size_t n = std::min(want - done, step - static_cast<size_t>((b - offset + done) % step));
        const size_t r = read_at(fd, at + done, n, b + done, path);
        got += r;
        done += n;
        if (r < n) break;
        if (filled) filled(static_cast<size_t>(b - offset) + done);
      }
      read += got;
    }
    // The file shrank since its extents were mapped: what is gone reads as zeros, like a hole.
    if (got < want) std::memset(at + got, 0, want - got);
    if (filled) filled(static_cast<size_t>(f - offset));
  }
  if (filled) filled(len);
  return read;
}

}  // namespace blocksnap
