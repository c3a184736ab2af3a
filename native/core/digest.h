// SHA-256 of block contents. The addon resolves OpenSSL from the node binary (which exports its
// bundled libcrypto); the standalone test build links the system libcrypto. Both are OpenSSL 3,
// whose SHA-256 uses SHA-NI / AVX2 where the CPU has them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace blocksnap {

inline constexpr size_t kDigestSize = 32;
using Digest = std::array<uint8_t, kDigestSize>;

// Thread-safe; throws std::runtime_error only if libcrypto itself fails (no SHA-256 provider).
Digest sha256(const void* data, size_t len);

// SHA-256 in pieces, with a context this object owns, so that a hash abandoned half way (see
// core/hash_in_place.h) still frees it. Throws std::runtime_error like sha256().
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t len);
  Digest finish();

 private:
  ::evp_md_ctx_st* ctx_;
};

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
