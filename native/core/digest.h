// SHA-256 of block contents. The addon resolves OpenSSL from the node binary (which exports its
// bundled libcrypto); the standalone test build links the system libcrypto. Both are OpenSSL 3,
// whose SHA-256 uses SHA-NI / AVX2 where the CPU has them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace blocksnap {

inline constexpr size_t kDigestSize = 32;
using Digest = std::array<uint8_t, kDigestSize>;

// For unordered containers keyed by digest: the digest is already uniform, so its first word is
// as good a hash as any.
struct DigestWordHash {
  size_t operator()(const Digest& d) const noexcept {
    size_t h;
    std::memcpy(&h, d.data(), sizeof h);
    return h;
  }
};

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

// SHA-256 of data[0, len) that also reports how far the hash had got after each `piece` bytes
// (a multiple of 64, SHA-256's block): `marks` gets one entry per piece (the last may be short),
// the running state after that piece (eight big-endian 32-bit words, before any padding) and, for
// the last piece, the digest itself, which is also returned. What a granule file stores
// (core/granule_file.h): any one piece can then be checked without hashing the others. Costs the
// same as sha256(): the states are the values the hash computes anyway.
Digest sha256_marked(const uint8_t* data, size_t len, size_t piece, std::vector<Digest>& marks);

// sha256_marked for a message that arrives in parts of any size (a block hashed as its read
// fills the buffer, core/hash_as_read.h): the same marks and digest as one sha256_marked of the
// parts joined. Throws like sha256_marked.
class MarkedSha256 {
 public:
  explicit MarkedSha256(size_t piece);
  ~MarkedSha256();
  MarkedSha256(const MarkedSha256&) = delete;
  MarkedSha256& operator=(const MarkedSha256&) = delete;
  void update(const uint8_t* data, size_t len);
  Digest finish(std::vector<Digest>& marks);

 private:
  struct State;
  std::unique_ptr<State> state_;
  size_t piece_;
  uint64_t total_ = 0;
  std::vector<Digest> marks_;
};

// Checks one piece against the marks above: whether data[0, len), found at `offset` (a multiple
// of 64) of the message, hashes from the mark before it (`from`; null for the first piece) to
// `to`, the running state after it, or, when `last`, the message's digest. A SHA-256 compression
// from a known state: as hard to fool as the digest itself.
bool sha256_piece_matches(const Digest* from, uint64_t offset, const uint8_t* data, size_t len, const Digest& to, bool last);

// Stands for ZERO in digest arrays; SHA-256 never yields it in practice.
inline bool is_zero_digest(const uint8_t* d) noexcept {
  uint64_t words[4];
  std::memcpy(words, d, sizeof words);
  return (words[0] | words[1] | words[2] | words[3]) == 0;
}
inline bool is_zero_digest(const Digest& d) noexcept { return is_zero_digest(d.data()); }

std::string to_hex(const Digest& d);

// Lowercase or uppercase; returns false unless `hex` is exactly 64 hex digits.
bool from_hex(std::string_view hex, Digest& out);

}  // namespace blocksnap
