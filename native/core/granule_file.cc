#include "core/granule_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/block_format.h"
#include "core/error.h"
#include "core/little_endian.h"
#include "core/store_layout.h"
#include "io/file_io.h"
#include "io/open_regular.h"
#include "io/unique_fd.h"

namespace blocksnap {

namespace {

// The largest block (64 MiB) has 1024 granules: anything bigger is not a granule file.
constexpr size_t kMaxGranuleFileSize = granule_file_size(kMaxBlockSize / kGranuleSize);

bool make_dir(const std::string& path) { return ::mkdir(path.c_str(), 0700) == 0 || errno == EEXIST; }

}  // namespace

bool granule_matches(const GranuleDigests& g, uint64_t k, const uint8_t* data, size_t len) {
  const uint64_t count = g.marks.size();
  if (k >= count) return false;
  return sha256_piece_matches(k == 0 ? nullptr : &g.marks[k - 1], k * kGranuleSize, data, len, g.marks[k], k + 1 == count);
}

std::vector<uint8_t> encode_granule_file(const GranuleDigests& g) {
  std::vector<uint8_t> out(granule_file_size(g.marks.size()));
  uint8_t* p = out.data();
  std::memcpy(p, kGranuleMagic, sizeof kGranuleMagic);
  put_le<uint16_t>(p + kGranuleVersionOffset, kGranuleFileVersion);
  put_le<uint16_t>(p + kGranuleFlagsOffset, 0);
  put_le<uint32_t>(p + kGranuleHeaderSizeOffset, kGranuleHeaderSize);
  put_le<uint32_t>(p + kGranuleSizeOffset, kGranuleSize);
  put_le<uint32_t>(p + kGranuleCountOffset, static_cast<uint32_t>(g.marks.size()));
  put_le<uint64_t>(p + kGranuleRawLengthOffset, g.raw_length);
  std::memcpy(p + kGranuleBlockDigestOffset, g.block.data(), kDigestSize);
  for (size_t k = 0; k < g.marks.size(); ++k) std::memcpy(p + kGranuleHeaderSize + k * kDigestSize, g.marks[k].data(), kDigestSize);
  const size_t body = out.size() - kDigestSize;
  const Digest sum = sha256(p, body);
  std::memcpy(p + body, sum.data(), kDigestSize);
  return out;
}

bool decode_granule_file(const uint8_t* p, size_t len, const Digest& block, uint64_t raw_length, GranuleDigests& out,
                         std::string& why) {
  const uint64_t count = granule_count(raw_length);
  if (count == 0) {
    why = "no block is empty";
    return false;
  }
  if (len != granule_file_size(count)) {
    why = "size " + std::to_string(len) + ", expected " + std::to_string(granule_file_size(count));
    return false;
  }
  Digest sum;
  std::memcpy(sum.data(), p + len - kDigestSize, kDigestSize);
  if (sha256(p, len - kDigestSize) != sum) {
    why = "checksum mismatch";
    return false;
  }
  if (std::memcmp(p, kGranuleMagic, sizeof kGranuleMagic) != 0) why = "bad magic";
  else if (get_le<uint16_t>(p + kGranuleVersionOffset) != kGranuleFileVersion) why = "unknown version";
  else if (get_le<uint16_t>(p + kGranuleFlagsOffset) != 0) why = "unknown flags";
  else if (get_le<uint32_t>(p + kGranuleHeaderSizeOffset) != kGranuleHeaderSize) why = "bad header size";
  else if (get_le<uint32_t>(p + kGranuleSizeOffset) != kGranuleSize) why = "another granule size";
  else if (get_le<uint32_t>(p + kGranuleCountOffset) != count) why = "wrong granule count";
  else if (get_le<uint64_t>(p + kGranuleRawLengthOffset) != raw_length) why = "wrong raw length";
  else if (std::memcmp(p + kGranuleBlockDigestOffset, block.data(), kDigestSize) != 0) why = "describes another block";
  else if (std::memcmp(p + kGranuleHeaderSize + (count - 1) * kDigestSize, block.data(), kDigestSize) != 0) why = "marks end elsewhere";
  if (!why.empty()) return false;
  out.block = block;
  out.raw_length = raw_length;
  out.marks.resize(count);
  for (size_t k = 0; k < count; ++k) std::memcpy(out.marks[k].data(), p + kGranuleHeaderSize + k * kDigestSize, kDigestSize);
  return true;
}

// The same fan-out as the block files.
std::string granule_file_path(const std::string& granule_dir, const Digest& d) { return block_file_path(granule_dir, d); }

std::optional<GranuleDigests> load_granule_file(const std::string& granule_dir, const Digest& block, uint64_t raw_length) {
  const std::string path = granule_file_path(granule_dir, block);
  UniqueFd fd(open_retry(path.c_str(), kOpenRegularFlags));
  if (!fd || !opened_regular(fd.get())) return std::nullopt;
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || st.st_size <= 0 || static_cast<size_t>(st.st_size) > kMaxGranuleFileSize)
    return std::nullopt;
  std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
  try {
    if (read_at(fd.get(), data.data(), data.size(), 0, path) != data.size()) return std::nullopt;
  } catch (const Error&) {
    return std::nullopt;
  }
  GranuleDigests g;
  std::string why;
  if (!decode_granule_file(data.data(), data.size(), block, raw_length, g, why)) return std::nullopt;
  return g;
}

bool store_granule_file(const std::string& granule_dir, const GranuleDigests& g) {
  static std::atomic<uint64_t> sequence{0};
  const std::string final_path = granule_file_path(granule_dir, g.block);
  const std::string tmp_dir = granule_dir + "/" + kTmpDirName;
  if (!make_dir(granule_dir) || !make_dir(tmp_dir) || !make_dir(parent_dir(final_path))) return false;
  const std::string tmp = tmp_dir + "/" + to_hex(g.block) + "." + std::to_string(::getpid()) + "." +
                          std::to_string(sequence.fetch_add(1, std::memory_order_relaxed));
  const std::vector<uint8_t> bytes = encode_granule_file(g);
  {
    UniqueFd fd(open_retry(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return false;
    try {
      write_at(fd.get(), bytes.data(), bytes.size(), 0, tmp);
    } catch (const Error&) {
      ::unlink(tmp.c_str());
      return false;
    }
  }
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace blocksnap
