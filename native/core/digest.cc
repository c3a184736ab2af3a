#include "core/digest.h"

#include <openssl/evp.h>

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

}  // namespace

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
