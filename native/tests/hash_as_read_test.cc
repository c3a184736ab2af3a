#include <vector>

#include "core/digest.h"
#include "core/hash_as_read.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr size_t kLen = 1024 * 1024;

// Feeds buf to a HashAsRead in pieces of `piece` bytes (the last one short), as a read would.
Digest hash_in_pieces(const std::vector<uint8_t>& buf, size_t piece, size_t mark_piece, std::vector<Digest>& marks, bool& zero) {
  HashAsRead hash(buf.data(), mark_piece);
  for (size_t n = 0; n < buf.size();) {
    n = std::min(buf.size(), n + piece);
    hash.filled(n);
  }
  zero = hash.all_zero();
  return zero ? Digest{} : hash.finish(marks);
}

}  // namespace

TEST(hash_as_read_in_pieces_equals_a_one_shot_digest) {
  const std::vector<uint8_t> buf = pattern(kLen + 4096 + 17, 3);
  for (size_t piece : {size_t{64 * 1024}, size_t{100000}, size_t{256 * 1024}, buf.size()}) {
    std::vector<Digest> marks;
    bool zero = true;
    CHECK(hash_in_pieces(buf, piece, 0, marks, zero) == sha256(buf.data(), buf.size()));
    CHECK(!zero);
  }
}

TEST(hash_as_read_keeps_the_marks_of_a_one_shot_marked_digest) {
  const std::vector<uint8_t> buf = pattern(kLen + 333, 9);
  std::vector<Digest> expected;
  const Digest d = sha256_marked(buf.data(), buf.size(), 64 * 1024, expected);
  std::vector<Digest> marks;
  bool zero = true;
  CHECK(hash_in_pieces(buf, 100000, 64 * 1024, marks, zero) == d);
  CHECK(marks == expected);
}

TEST(hash_as_read_of_a_block_zero_in_its_first_pieces_only_hashes_the_zeros_too) {
  std::vector<uint8_t> buf(kLen, 0);
  buf[kLen - 1] = 1;  // data only in the last 256 KiB piece
  std::vector<Digest> marks;
  bool zero = true;
  CHECK(hash_in_pieces(buf, 256 * 1024, 0, marks, zero) == sha256(buf.data(), buf.size()));
  CHECK(!zero);
}

TEST(hash_as_read_of_a_block_with_data_first_and_zeros_after_equals_a_one_shot_digest) {
  std::vector<uint8_t> buf(kLen, 0);
  buf[0] = 1;
  std::vector<Digest> marks;
  bool zero = true;
  CHECK(hash_in_pieces(buf, 256 * 1024, 0, marks, zero) == sha256(buf.data(), buf.size()));
  CHECK(!zero);
}

TEST(hash_as_read_finds_an_all_zero_block) {
  const std::vector<uint8_t> buf(kLen, 0);
  std::vector<Digest> marks;
  bool zero = false;
  hash_in_pieces(buf, 256 * 1024, 0, marks, zero);
  CHECK(zero);
}
