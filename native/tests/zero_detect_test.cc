#include <cstdint>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/zero_detect.h"
#include "tests/harness.h"

using namespace blocksnap;

TEST(zero_detect_accepts_all_zero_buffers_of_every_small_length) {
  std::vector<uint8_t> buf(300, 0);
  for (size_t len = 0; len <= buf.size(); ++len) CHECK(is_all_zero(buf.data(), len));
  AlignedBuffer big(4 << 20);
  std::fill(big.data(), big.data() + big.size(), 0);
  CHECK(is_all_zero(big.data(), big.size()));
}

TEST(zero_detect_sees_a_set_last_byte) {
  for (size_t len = 1; len <= 300; ++len) {
    std::vector<uint8_t> buf(len, 0);
    buf[len - 1] = 0x80;
    CHECK(!is_all_zero(buf.data(), len));
  }
  AlignedBuffer big(4 << 20);
  std::fill(big.data(), big.data() + big.size(), 0);
  big.data()[big.size() - 1] = 1;
  CHECK(!is_all_zero(big.data(), big.size()));
}

TEST(zero_detect_sees_a_set_first_byte) {
  for (size_t len = 1; len <= 300; ++len) {
    std::vector<uint8_t> buf(len, 0);
    buf[0] = 1;
    CHECK(!is_all_zero(buf.data(), len));
  }
}

TEST(zero_detect_sees_every_single_set_byte_at_unaligned_starts) {
  std::vector<uint8_t> storage(512 + 16, 0);
  for (size_t start = 0; start < 16; ++start) {
    for (size_t len : {1u, 7u, 8u, 9u, 63u, 64u, 65u, 127u, 200u, 511u}) {
      uint8_t* buf = storage.data() + start;
      CHECK(is_all_zero(buf, len));
      for (size_t pos = 0; pos < len; ++pos) {
        buf[pos] = 0x01;
        if (is_all_zero(buf, len)) harness::fail(__FILE__, __LINE__, "missed byte " + std::to_string(pos) +
                                                  " of " + std::to_string(len) + " at start " + std::to_string(start));
        buf[pos] = 0;
      }
    }
  }
}

TEST(zero_detect_ignores_bytes_outside_the_range) {
  std::vector<uint8_t> buf(130, 0);
  buf[0] = 1;
  buf[129] = 1;
  CHECK(is_all_zero(buf.data() + 1, 128));
}
