// A base snapshot for volume tests: an image of `content` scanned into <dir>/blocks.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/scan_image.h"
#include "tests/temp_dir.h"

namespace testing_support {

// The snapshot's digests (ceil(size / block_size) × 32, ZERO as zeros); its blocks are in the
// store, and their granule files in `granule_dir` when it is given.
inline std::vector<uint8_t> scan_base(const TempDir& dir, const std::vector<uint8_t>& content, uint64_t block_size,
                                      const std::string& granule_dir = {}) {
  const std::string img = dir / "base.img";
  make_sparse_file(img, content.size());
  write_bytes(img, 0, content);
  ::mkdir((dir / "blocks").c_str(), 0700);
  blocksnap::JobControl control;
  blocksnap::ScanParams p{.image_path = img, .store_dir = dir / "blocks", .granule_dir = granule_dir, .block_size = block_size,
                          .threads = 1};
  return blocksnap::scan_image(p, control, nullptr).digests;
}

}  // namespace testing_support
