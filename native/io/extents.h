// Where a file has data, from SEEK_DATA/SEEK_HOLE. The scan walks the whole image once up front
// so that a block lying entirely in a hole becomes ZERO without a single read, and a block that
// is partly hole reads only its data ranges. The map holds one entry per data extent the
// filesystem reports (16 bytes each), which for real images is far below the digest array.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace blocksnap {

struct Extent {
  uint64_t begin;
  uint64_t end;  // exclusive
  bool operator==(const Extent&) const = default;
};

class ExtentMap {
 public:
  // Data extents of [0, size). A filesystem without SEEK_DATA (EINVAL, EOPNOTSUPP) is reported
  // as one extent covering everything: correct, only slower. Throws IOError.
  static ExtentMap scan(int fd, uint64_t size, const std::string& path);

  static ExtentMap all_data(uint64_t size);

  const std::vector<Extent>& extents() const noexcept { return extents_; }

  // The data extents that intersect [begin, end), not clipped. Empty means all hole.
  std::span<const Extent> overlapping(uint64_t begin, uint64_t end) const noexcept;

  uint64_t data_bytes() const noexcept;
  // The bytes of [begin, end) that are data.
  uint64_t data_bytes(uint64_t begin, uint64_t end) const noexcept;

 private:
  std::vector<Extent> extents_;  // sorted, disjoint, non-empty
};

// True when [offset, offset+len) holds any data: one lseek, for the occasional single-block
// question (apply). Holes past end of file count as no data.
bool range_has_data(int fd, uint64_t offset, uint64_t len, const std::string& path);

}  // namespace blocksnap
