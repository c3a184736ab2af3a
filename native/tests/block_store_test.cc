#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "core/block_format.h"
#include "core/block_reader.h"
#include "core/block_writer.h"
#include "core/store_layout.h"
#include "io/page_cache.h"
#include "tests/harness.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

size_t entries_in(const std::string& dir) {
  size_t n = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++n;
    ::closedir(d);
  }
  return n;
}

struct StoredBlock {
  TempDir dir;
  std::vector<uint8_t> data = pattern(100000, 9);
  Digest digest = sha256(data.data(), data.size());
  std::string path = block_file_path(dir.path(), digest);

  StoredBlock() {
    BlockWriter writer(dir.path());
    REQUIRE(writer.put(digest, data.data(), data.size()));
    writer.sync();
  }
};

}  // namespace

TEST(block_store_writes_header_and_payload_under_the_fanout_path) {
  StoredBlock b;
  const std::string hex = to_hex(b.digest);
  CHECK_EQ(b.path, b.dir.path() + "/" + hex.substr(0, 3) + "/" + hex);
  const std::vector<uint8_t> file = read_file(b.path);
  REQUIRE(file.size() == kBlockHeaderSize + b.data.size());
  uint8_t raw[kBlockHeaderSize];
  std::memcpy(raw, file.data(), sizeof raw);
  BlockHeader h;
  std::string why;
  REQUIRE(decode_block_header(raw, h, why));
  CHECK(h.raw_length == b.data.size() && h.digest == b.digest);
  CHECK(std::memcmp(file.data() + kBlockHeaderSize, b.data.data(), b.data.size()) == 0);
  struct stat st;
  REQUIRE(::stat(b.path.c_str(), &st) == 0);
  CHECK_EQ(st.st_mode & 0777, 0600u);
  CHECK_EQ(entries_in(tmp_dir_path(b.dir.path())), 0u);
}

TEST(block_store_round_trips_through_the_reader) {
  StoredBlock b;
  AlignedBuffer buf;
  REQUIRE(read_block(b.dir.path(), b.digest, buf, {.expected_length = b.data.size()}) == b.data.size());
  CHECK(std::memcmp(buf.data(), b.data.data(), b.data.size()) == 0);
}

TEST(block_store_does_not_rewrite_an_existing_block) {
  StoredBlock b;
  BlockWriter writer(b.dir.path());
  CHECK(!writer.put(b.digest, b.data.data(), b.data.size()));
  CHECK_EQ(entries_in(tmp_dir_path(b.dir.path())), 0u);
}

TEST(block_store_repairs_a_truncated_block_file) {
  StoredBlock b;
  REQUIRE(::truncate(b.path.c_str(), 100) == 0);
  BlockWriter writer(b.dir.path());
  CHECK(writer.put(b.digest, b.data.data(), b.data.size()));
  AlignedBuffer buf;
  CHECK(read_block(b.dir.path(), b.digest, buf) == b.data.size());
}

TEST(block_store_reuses_a_damaged_file_of_the_right_size_unless_told_it_is_damaged) {
  StoredBlock b;
  std::vector<uint8_t> bad = b.data;
  bad[5000] ^= 0x01;
  write_bytes(b.path, kBlockHeaderSize, bad);
  BlockWriter plain(b.dir.path());
  CHECK(!plain.needs_repair(b.digest));
  CHECK(!plain.put(b.digest, b.data.data(), b.data.size()));  // right size: "present"
  AlignedBuffer buf;
  CHECK_THROWS_CODE(read_block(b.dir.path(), b.digest, buf), ErrorCode::DigestMismatch);
  CHECK(plain.repaired().empty());
}

TEST(block_store_rewrites_a_damaged_block_by_renaming_a_fresh_file_over_it) {
  StoredBlock b;
  std::vector<uint8_t> bad = b.data;
  bad[5000] ^= 0x01;
  write_bytes(b.path, kBlockHeaderSize, bad);
  struct stat before;
  REQUIRE(::stat(b.path.c_str(), &before) == 0);

  BlockWriter writer(b.dir.path());
  const Digest other = sha256("other", 5);
  std::vector<uint8_t> packed(b.digest.begin(), b.digest.end());
  packed.insert(packed.end(), other.begin(), other.end());
  packed.insert(packed.end(), b.digest.begin(), b.digest.end());  // duplicates are fine
  writer.set_damaged(packed);
  CHECK(writer.needs_repair(b.digest));
  CHECK(writer.needs_repair(other));
  CHECK(!writer.needs_repair(sha256("unrelated", 9)));
  CHECK(writer.put(b.digest, b.data.data(), b.data.size()));
  writer.sync();
  CHECK(!writer.needs_repair(b.digest));
  CHECK(writer.needs_repair(other));
  CHECK(writer.repaired() == std::vector<uint8_t>(b.digest.begin(), b.digest.end()));

  AlignedBuffer buf;
  REQUIRE(read_block(b.dir.path(), b.digest, buf, {.expected_length = b.data.size()}) == b.data.size());
  CHECK(std::memcmp(buf.data(), b.data.data(), b.data.size()) == 0);
  struct stat after;
  REQUIRE(::stat(b.path.c_str(), &after) == 0);
  CHECK(after.st_ino != before.st_ino);  // a new file renamed over it, never written in place
  CHECK_EQ(after.st_mode & 0777, 0600u);
  CHECK_EQ(entries_in(tmp_dir_path(b.dir.path())), 0u);
  // Once repaired, the block is present as any other.
  CHECK(!writer.put(b.digest, b.data.data(), b.data.size()));
  CHECK_EQ(writer.repaired().size(), kDigestSize);
}

TEST(block_store_repairs_a_damaged_header_and_stores_a_damaged_digest_that_is_gone) {
  StoredBlock b;
  write_bytes(b.path, 0, {'X'});  // the magic
  BlockWriter writer(b.dir.path());
  std::vector<uint8_t> framed(kBlockHeaderSize + b.data.size());
  std::memcpy(framed.data() + kBlockHeaderSize, b.data.data(), b.data.size());
  writer.set_damaged(std::vector<uint8_t>(b.digest.begin(), b.digest.end()));
  CHECK(writer.put_framed(b.digest, framed.data(), b.data.size()));
  AlignedBuffer buf;
  CHECK(read_block(b.dir.path(), b.digest, buf) == b.data.size());

  // A digest marked damaged whose file was swept meanwhile is simply stored.
  const std::vector<uint8_t> data = pattern(3000, 4);
  const Digest d = sha256(data.data(), data.size());
  BlockWriter again(b.dir.path());
  again.set_damaged(std::vector<uint8_t>(d.begin(), d.end()));
  CHECK(again.put(d, data.data(), data.size()));
  again.sync();
  CHECK(read_block(b.dir.path(), d, buf) == data.size());
  CHECK(!again.needs_repair(d));
}

TEST(block_reader_reports_a_missing_block) {
  TempDir dir;
  AlignedBuffer buf;
  CHECK_THROWS_CODE(read_block(dir.path(), sha256("nope", 4), buf), ErrorCode::BlockMissing);
}

TEST(block_reader_reports_a_flipped_payload_byte_as_digest_mismatch) {
  StoredBlock b;
  std::vector<uint8_t> bad = b.data;
  bad[5000] ^= 0x01;
  write_bytes(b.path, kBlockHeaderSize, bad);
  AlignedBuffer buf;
  try {
    read_block(b.dir.path(), b.digest, buf);
    harness::fail(__FILE__, __LINE__, "no error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::DigestMismatch);
    CHECK(e.digest && *e.digest == b.digest);
    CHECK(std::string(e.what()).find(to_hex(b.digest)) != std::string::npos);
  }
}

TEST(block_reader_rejects_bad_headers_as_corrupt) {
  StoredBlock b;
  AlignedBuffer buf;
  write_bytes(b.path, 32, {static_cast<uint8_t>(b.digest[0] ^ 0xff)});  // header names another digest
  CHECK_THROWS_CODE(read_block(b.dir.path(), b.digest, buf), ErrorCode::BlockCorrupt);
  write_bytes(b.path, 32, {b.digest[0]});
  write_bytes(b.path, 0, {'X'});
  CHECK_THROWS_CODE(read_block(b.dir.path(), b.digest, buf), ErrorCode::BlockCorrupt);
}

TEST(block_reader_rejects_wrong_lengths_as_corrupt) {
  StoredBlock b;
  AlignedBuffer buf;
  CHECK_THROWS_CODE(read_block(b.dir.path(), b.digest, buf, {.expected_length = 65536}), ErrorCode::BlockCorrupt);
  REQUIRE(::truncate(b.path.c_str(), kBlockHeaderSize + 10) == 0);
  CHECK_THROWS_CODE(read_block(b.dir.path(), b.digest, buf), ErrorCode::BlockCorrupt);
  REQUIRE(::truncate(b.path.c_str(), 10) == 0);
  CHECK_THROWS_CODE(read_block(b.dir.path(), b.digest, buf), ErrorCode::BlockCorrupt);
}

// sync() fsyncs the touched directories several at a time; a directory it cannot sync (removed
// behind the writer's back) still fails it.
TEST(block_writer_sync_fails_when_a_touched_directory_is_gone) {
  TempDir dir;
  BlockWriter writer(dir.path());
  std::vector<Digest> digests;
  for (uint8_t i = 0; i < 24; ++i) {
    const std::vector<uint8_t> data = pattern(4096, i);
    digests.push_back(sha256(data.data(), data.size()));
    REQUIRE(writer.put(digests.back(), data.data(), data.size()));
  }
  const std::string gone = fanout_dir_path(dir.path(), digests[7]);
  for (const Digest& d : digests)
    if (fanout_dir_path(dir.path(), d) == gone) ::unlink(block_file_path(dir.path(), d).c_str());
  REQUIRE(::rmdir(gone.c_str()) == 0);
  CHECK_THROWS_CODE(writer.sync(), ErrorCode::IOError);
}

TEST(block_writer_sync_after_many_new_fanout_directories_leaves_every_block_readable) {
  TempDir dir;
  BlockWriter writer(dir.path());
  std::vector<std::vector<uint8_t>> blocks;
  for (uint8_t i = 0; i < 40; ++i) {
    blocks.push_back(pattern(8192, static_cast<uint8_t>(100 + i)));
    REQUIRE(writer.put(sha256(blocks.back().data(), 8192), blocks.back().data(), 8192));
  }
  writer.sync();
  for (const auto& b : blocks) {
    AlignedBuffer buf;
    CHECK_EQ(read_block(dir.path(), sha256(b.data(), b.size()), buf), b.size());
  }
}

TEST(block_writer_keeps_the_first_bytes_it_stores_cached_and_drops_the_rest) {
  TempDir dir;
  constexpr size_t kLen = 1024 * 1024;
  BlockWriter writer(dir.path(), kLen + kLen / 2);  // room for the first block only
  const auto resident = [&](const Digest& d) {
    const int fd = ::open(block_file_path(dir.path(), d).c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    const auto pages = resident_pages(fd, 0, kBlockHeaderSize + kLen);
    ::close(fd);
    return std::make_pair(resident_count(pages), pages.size());
  };
  const auto first = pattern(kLen, 1), second = pattern(kLen, 2);
  const Digest d1 = sha256(first.data(), kLen), d2 = sha256(second.data(), kLen);
  REQUIRE(writer.put(d1, first.data(), kLen));
  REQUIRE(writer.put(d2, second.data(), kLen));
  const auto [kept, pages] = resident(d1);
  CHECK_EQ(kept, pages);  // what a replication right after reads
  CHECK_EQ(resident(d2).first, size_t{0});
}

// Past the cache, the 4 KiB-aligned front goes with O_DIRECT and the rest through the cache.
TEST(block_writer_stores_a_block_of_unaligned_length_past_the_cache_whole) {
  TempDir dir;
  BlockWriter writer(dir.path(), 0);
  const auto data = pattern(100000, 5);
  const Digest d = sha256(data.data(), data.size());
  REQUIRE(writer.put(d, data.data(), data.size()));
  writer.sync();
  AlignedBuffer buf;
  REQUIRE(read_block(dir.path(), d, buf) == data.size());
  CHECK(std::memcmp(buf.data(), data.data(), data.size()) == 0);
  struct stat st{};
  REQUIRE(::stat(block_file_path(dir.path(), d).c_str(), &st) == 0);
  CHECK_EQ(static_cast<uint64_t>(st.st_size), kBlockHeaderSize + data.size());
}

// A framed block (laid out as its file) gets its header written in front of it and goes whole.
TEST(block_writer_stores_a_framed_block_from_its_frame) {
  TempDir dir;
  BlockWriter writer(dir.path(), 0);
  const auto data = pattern(100000, 6);
  const Digest d = sha256(data.data(), data.size());
  AlignedBuffer frame(kBlockHeaderSize + data.size());
  std::memcpy(frame.data() + kBlockHeaderSize, data.data(), data.size());
  REQUIRE(writer.put_framed(d, frame.data(), data.size()));
  writer.sync();
  AlignedBuffer buf;
  REQUIRE(read_block(dir.path(), d, buf) == data.size());
  CHECK(std::memcmp(buf.data(), data.data(), data.size()) == 0);
}
