// Blocks put into a test store, and the digest array a snapshot of them would have.
#pragma once

#include <cstdint>
#include <vector>

#include "core/block_writer.h"
#include "core/digest.h"

namespace testing_support {

// `blocks` (empty = ZERO) written through `w`; the digests, ZERO as 32 zero bytes.
inline std::vector<uint8_t> put_blocks(blocksnap::BlockWriter& w, const std::vector<std::vector<uint8_t>>& blocks) {
  std::vector<uint8_t> digests;
  for (const auto& b : blocks) {
    blocksnap::Digest d{};
    if (!b.empty()) {
      d = blocksnap::sha256(b.data(), b.size());
      w.put(d, b.data(), b.size());
    }
    digests.insert(digests.end(), d.begin(), d.end());
  }
  return digests;
}

}  // namespace testing_support
