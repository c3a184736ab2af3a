#include <cstring>

#include "core/block_format.h"
#include "tests/harness.h"

using namespace blocksnap;

namespace {

BlockHeader sample() { return make_block_header(sha256("block", 5), 4 << 20); }

bool rejects(void (*mutate)(uint8_t (&)[kBlockHeaderSize]), const char* reason_part) {
  uint8_t raw[kBlockHeaderSize];
  encode_block_header(sample(), raw);
  mutate(raw);
  BlockHeader h;
  std::string why;
  if (decode_block_header(raw, h, why)) return false;
  return why.find(reason_part) != std::string::npos;
}

}  // namespace

TEST(block_header_has_the_frozen_layout) {
  uint8_t raw[kBlockHeaderSize];
  const BlockHeader h = sample();
  encode_block_header(h, raw);
  CHECK(std::memcmp(raw, "BSNAPBLK", 8) == 0);
  CHECK(raw[8] == 1 && raw[9] == 0);                        // version 1, little-endian
  CHECK(raw[10] == 0 && raw[11] == 0);                      // flags
  CHECK(raw[12] == 64 && raw[13] == 0 && raw[14] == 0 && raw[15] == 0);
  const uint8_t four_mib_le[8] = {0, 0, 0x40, 0, 0, 0, 0, 0};
  CHECK(std::memcmp(raw + 16, four_mib_le, 8) == 0);        // payload length
  CHECK(std::memcmp(raw + 24, four_mib_le, 8) == 0);        // raw length
  CHECK(std::memcmp(raw + 32, h.digest.data(), 32) == 0);
}

TEST(block_header_round_trips) {
  uint8_t raw[kBlockHeaderSize];
  const BlockHeader h = sample();
  encode_block_header(h, raw);
  BlockHeader back;
  std::string why;
  REQUIRE(decode_block_header(raw, back, why));
  CHECK(back.version == 1 && back.flags == 0 && back.header_size == 64);
  CHECK(back.payload_length == h.payload_length && back.raw_length == h.raw_length);
  CHECK(back.digest == h.digest);
}

TEST(block_header_rejects_bad_magic) {
  CHECK(rejects([](uint8_t(&r)[kBlockHeaderSize]) { r[0] = 'X'; }, "magic"));
}

TEST(block_header_rejects_other_versions) {
  CHECK(rejects([](uint8_t(&r)[kBlockHeaderSize]) { r[8] = 2; }, "version 2"));
  CHECK(rejects([](uint8_t(&r)[kBlockHeaderSize]) { r[8] = 0; }, "version 0"));
}

TEST(block_header_rejects_compression_and_reserved_flags) {
  CHECK(rejects([](uint8_t(&r)[kBlockHeaderSize]) { r[10] = 1; }, "compression"));
  CHECK(rejects([](uint8_t(&r)[kBlockHeaderSize]) { r[10] = 0x10; }, "reserved"));
  CHECK(rejects([](uint8_t(&r)[kBlockHeaderSize]) { r[11] = 0x80; }, "reserved"));
}

TEST(block_header_rejects_other_header_sizes) {
  CHECK(rejects([](uint8_t(&r)[kBlockHeaderSize]) { r[12] = 128; }, "header size 128"));
}

TEST(block_header_rejects_lengths_that_disagree_or_are_too_large) {
  CHECK(rejects([](uint8_t(&r)[kBlockHeaderSize]) { r[16] = 1; }, "differs from raw length"));
  CHECK(rejects([](uint8_t(&r)[kBlockHeaderSize]) { r[19] = 0x10; r[27] = 0x10; }, "exceeds"));
}

TEST(block_sizes_follow_format_ts) {
  CHECK(is_valid_block_size(64 * 1024));
  CHECK(is_valid_block_size(4 << 20));
  CHECK(is_valid_block_size(64 << 20));
  CHECK(!is_valid_block_size(32 * 1024));
  CHECK(!is_valid_block_size(128 << 20));
  CHECK(!is_valid_block_size(3 << 20));
}
