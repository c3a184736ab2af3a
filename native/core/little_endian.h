// Little-endian integers in byte buffers: every on-disk format here is little-endian.
#pragma once

#include <cstddef>
#include <cstdint>

namespace blocksnap {

template <typename T>
inline void put_le(uint8_t* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

template <typename T>
inline T get_le(const uint8_t* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(p[i]) << (8 * i);
  return v;
}

}  // namespace blocksnap
