#include <string>

#include "core/digest.h"
#include "tests/harness.h"

using namespace blocksnap;

TEST(digest_matches_fips_180_vectors) {
  const std::string abc = "abc";
  CHECK_EQ(to_hex(sha256(abc.data(), abc.size())),
           std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  CHECK_EQ(to_hex(sha256("", 0)), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK_EQ(to_hex(sha256(two_blocks.data(), two_blocks.size())),
           std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

TEST(digest_hex_round_trips_and_rejects_malformed_input) {
  const Digest d = sha256("x", 1);
  Digest back{};
  REQUIRE(from_hex(to_hex(d), back));
  CHECK(back == d);
  std::string upper = to_hex(d);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK(from_hex(upper, back) && back == d);
  CHECK(!from_hex(to_hex(d).substr(1), back));
  std::string bad = to_hex(d);
  bad[10] = 'g';
  CHECK(!from_hex(bad, back));
}

TEST(zero_digest_is_recognised) {
  CHECK(is_zero_digest(Digest{}));
  Digest d{};
  d[31] = 1;
  CHECK(!is_zero_digest(d));
}
