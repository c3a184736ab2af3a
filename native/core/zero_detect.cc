#include "core/zero_detect.h"

#include <cstdint>
#include <cstring>

namespace blocksnap {

bool is_all_zero(const void* data, size_t len) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  size_t i = 0;
  // OR-reduce a cache line per step: the compiler turns this into wide vector loads, and the
  // early exit costs one branch per 64 bytes. memcpy keeps unaligned input legal.
  for (; i + 64 <= len; i += 64) {
    uint64_t w[8];
    std::memcpy(w, p + i, sizeof w);
    if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0) return false;
  }
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, sizeof w);
    if (w != 0) return false;
  }
  for (; i < len; ++i)
    if (p[i] != 0) return false;
  return true;
}

}  // namespace blocksnap
