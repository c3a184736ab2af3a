// SHA-256 of block contents. The addon resolves OpenSSL from the node binary (which exports its
// bundled libcrypto); the standalone test build links the system libcrypto. Both are OpenSSL 3,
// whose SHA-256 uses SHA-NI / AVX2 where the CPU has them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace blocksnap {

inline constexpr size_t kDigestSize = 32;
using Digest = std::array<uint8_t, kDigestSize>;

// Thread-safe; throws std::runtime_error only if libcrypto itself fails (no SHA-256 provider).
Digest sha256(const void* data, size_t len);

// Stands for ZERO in digest arrays; SHA-256 never yields it in practice.
inline bool is_zero_digest(const Digest& d) noexcept {
  for (uint8_t b : d)
    if (b != 0) return false;
  return true;
}

std::string to_hex(const Digest& d);

// Lowercase or uppercase; returns false unless `hex` is exactly 64 hex digits.
bool from_hex(std::string_view hex, Digest& out);

}  // namespace blocksnap
