#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

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

TEST(digest_marked_equals_the_plain_digest_for_any_length) {
  std::vector<uint8_t> data(5 * 128 + 77);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + 7);
  std::vector<Digest> marks;
  for (size_t len : {size_t{1}, size_t{64}, size_t{128}, size_t{129}, data.size()}) {
    const Digest d = sha256_marked(data.data(), len, 128, marks);
    CHECK(d == sha256(data.data(), len));
    CHECK_EQ(marks.size(), (len + 127) / 128);
    CHECK(marks.back() == d);
  }
}

TEST(digest_each_piece_checks_against_its_marks_alone) {
  std::vector<uint8_t> data(4 * 192 + 10);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i ^ (i >> 3));
  std::vector<Digest> marks;
  sha256_marked(data.data(), data.size(), 192, marks);
  REQUIRE(marks.size() == 5);
  for (size_t k = 0; k < marks.size(); ++k) {
    const size_t len = std::min<size_t>(192, data.size() - k * 192);
    const bool last = k + 1 == marks.size();
    CHECK(sha256_piece_matches(k == 0 ? nullptr : &marks[k - 1], k * 192, data.data() + k * 192, len, marks[k], last));
    // One flipped bit, the piece checked from the wrong mark, or the last piece at the wrong
    // offset (which changes the length its padding encodes): refused.
    auto bad = std::vector<uint8_t>(data.begin() + k * 192, data.begin() + k * 192 + len);
    bad[len / 2] ^= 0x10;
    CHECK(!sha256_piece_matches(k == 0 ? nullptr : &marks[k - 1], k * 192, bad.data(), len, marks[k], last));
    if (k > 0) CHECK(!sha256_piece_matches(nullptr, k * 192, data.data() + k * 192, len, marks[k], last));
    if (k > 1) CHECK(!sha256_piece_matches(&marks[k - 2], k * 192, data.data() + k * 192, len, marks[k], last));
    if (last) CHECK(!sha256_piece_matches(&marks[k - 1], k * 192 + 64, data.data() + k * 192, len, marks[k], last));
  }
}

TEST(digest_marked_refuses_a_piece_that_is_not_whole_hash_blocks) {
  std::vector<Digest> marks;
  const uint8_t byte = 1;
  bool threw = false;
  try {
    sha256_marked(&byte, 1, 100, marks);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

TEST(digest_marked_in_parts_of_any_size_equals_it_in_one) {
  std::vector<uint8_t> data(7 * 128 + 33);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 29 + 3);
  std::vector<Digest> whole_marks;
  const Digest whole = sha256_marked(data.data(), data.size(), 128, whole_marks);
  // Parts that end before, on and past the mark boundaries, one of them empty.
  for (size_t part : {size_t{1}, size_t{63}, size_t{128}, size_t{200}, data.size()}) {
    MarkedSha256 hasher(128);
    hasher.update(data.data(), 0);
    for (size_t at = 0; at < data.size(); at += part) hasher.update(data.data() + at, std::min(part, data.size() - at));
    std::vector<Digest> marks;
    CHECK(hasher.finish(marks) == whole);
    CHECK(marks == whole_marks);
  }
}

TEST(digest_marked_of_a_message_ending_on_a_mark_has_one_mark_per_piece) {
  std::vector<uint8_t> data(3 * 128, 0x5a);
  MarkedSha256 hasher(128);
  hasher.update(data.data(), data.size());
  std::vector<Digest> marks;
  const Digest d = hasher.finish(marks);
  CHECK(d == sha256(data.data(), data.size()));
  CHECK_EQ(marks.size(), size_t{3});
  CHECK(marks.back() == d);
}
