#include "core/digest.h"

// The marks need SHA-256's running state, which only the SHA256_CTX interface shows; OpenSSL 3
// deprecates it but keeps it, with the same block function (SHA-NI) behind it as EVP's.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <stdexcept>

namespace blocksnap {

namespace {

// EVP_sha256() makes OpenSSL 3 look the implementation up in its provider store (under a lock)
// on every digest; fetching once removes that from the per-block path. Never freed: it lives as
// long as the process, like the provider it points into.
const EVP_MD* sha256_md() {
  static const EVP_MD* md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  return md;
}

void put_state(const SHA256_CTX& c, Digest& out) {
  for (size_t w = 0; w < 8; ++w) {
    out[4 * w] = static_cast<uint8_t>(c.h[w] >> 24);
    out[4 * w + 1] = static_cast<uint8_t>(c.h[w] >> 16);
    out[4 * w + 2] = static_cast<uint8_t>(c.h[w] >> 8);
    out[4 * w + 3] = static_cast<uint8_t>(c.h[w]);
  }
}

void check(int ok, const char* what) {
  if (ok != 1) throw std::runtime_error(std::string(what) + "(SHA-256) failed");
}

}  // namespace

struct MarkedSha256::State {
  SHA256_CTX ctx;
};

MarkedSha256::MarkedSha256(size_t piece) : state_(std::make_unique<State>()), piece_(piece) {
  if (piece == 0 || piece % SHA256_CBLOCK != 0) throw std::invalid_argument("sha256_marked: piece must be a multiple of 64");
  check(SHA256_Init(&state_->ctx), "SHA256_Init");
}

MarkedSha256::~MarkedSha256() = default;

void MarkedSha256::update(const uint8_t* data, size_t len) {
  while (len > 0) {
    // Up to the next piece boundary at most, where the running state is a mark.
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, piece_ - total_ % piece_));
    check(SHA256_Update(&state_->ctx, data, n), "SHA256_Update");
    total_ += n;
    data += n;
    len -= n;
    if (total_ % piece_ == 0) {
      marks_.emplace_back();
      put_state(state_->ctx, marks_.back());
    }
  }
}

Digest MarkedSha256::finish(std::vector<Digest>& marks) {
  Digest out;
  check(SHA256_Final(out.data(), &state_->ctx), "SHA256_Final");
  // The last piece's mark is the digest: a message ending on a boundary already has its entry.
  if (total_ == 0 || total_ % piece_ != 0) marks_.emplace_back();
  marks_.back() = out;
  marks = std::move(marks_);
  marks_.clear();
  return out;
}

Digest sha256_marked(const uint8_t* data, size_t len, size_t piece, std::vector<Digest>& marks) {
  MarkedSha256 hasher(piece);
  hasher.update(data, len);
  return hasher.finish(marks);
}

bool sha256_piece_matches(const Digest* from, uint64_t offset, const uint8_t* data, size_t len, const Digest& to, bool last) {
  if (offset % SHA256_CBLOCK != 0 || (offset == 0) != (from == nullptr)) return false;
  SHA256_CTX c;
  check(SHA256_Init(&c), "SHA256_Init");
  if (from != nullptr) {
    for (size_t w = 0; w < 8; ++w)
      c.h[w] = static_cast<SHA_LONG>((*from)[4 * w]) << 24 | static_cast<SHA_LONG>((*from)[4 * w + 1]) << 16 |
               static_cast<SHA_LONG>((*from)[4 * w + 2]) << 8 | static_cast<SHA_LONG>((*from)[4 * w + 3]);
    // The message length in bits so far, which the final padding encodes.
    const uint64_t bits = offset * 8;
    c.Nl = static_cast<SHA_LONG>(bits);
    c.Nh = static_cast<SHA_LONG>(bits >> 32);
  }
  check(SHA256_Update(&c, data, len), "SHA256_Update");
  Digest reached;
  if (last) check(SHA256_Final(reached.data(), &c), "SHA256_Final");
  else if (len % SHA256_CBLOCK != 0) return false;  // a piece before the last is whole 64-byte blocks
  else put_state(c, reached);
  return reached == to;
}

Digest sha256(const void* data, size_t len) {
  Digest out;
  unsigned int out_len = 0;
  if (EVP_Digest(data, len, out.data(), &out_len, sha256_md(), nullptr) != 1 || out_len != out.size())
    throw std::runtime_error("EVP_Digest(SHA-256) failed");
  return out;
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, sha256_md(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx_);
    throw std::runtime_error("EVP_DigestInit_ex(SHA-256) failed");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::update(const void* data, size_t len) {
  if (EVP_DigestUpdate(ctx_, data, len) != 1) throw std::runtime_error("EVP_DigestUpdate(SHA-256) failed");
}

Digest Sha256::finish() {
  Digest out;
  unsigned int out_len = 0;
  if (EVP_DigestFinal_ex(ctx_, out.data(), &out_len) != 1 || out_len != out.size())
    throw std::runtime_error("EVP_DigestFinal_ex(SHA-256) failed");
  return out;
}

std::string to_hex(const Digest& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(d.size() * 2, '\0');
  for (size_t i = 0; i < d.size(); ++i) {
    s[2 * i] = kHex[d[i] >> 4];
    s[2 * i + 1] = kHex[d[i] & 0xf];
  }
  return s;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool from_hex(std::string_view hex, Digest& out) {
  if (hex.size() != out.size() * 2) return false;
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

}  // namespace blocksnap
