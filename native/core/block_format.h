// The frozen block file format of src/store/format.ts, byte for byte. test/store/format.test.ts
// compares these constants with the TypeScript ones; any change here is a format version bump.
//
//   0   8  magic "BSNAPBLK"
//   8   2  format version (1)
//   10  2  flags (bits 0-3: compression algorithm, 0 = none; others reserved, must be 0)
//   12  4  header size (64)
//   16  8  payload length (bytes stored after the header)
//   24  8  raw length (bytes of the block once decoded)
//   32  32 SHA-256 of the raw bytes (the same digest as the file name)
//   64  .. payload
// All integers little-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/digest.h"
#include "io/direct_io.h"

namespace blocksnap {

inline constexpr char kBlockMagic[8] = {'B', 'S', 'N', 'A', 'P', 'B', 'L', 'K'};
inline constexpr uint16_t kBlockFormatVersion = 1;
inline constexpr uint32_t kBlockHeaderSize = 64;

// A frame: a buffer laid out as the file of a block of `raw_length` bytes (header, then payload),
// rounded up to the direct-I/O alignment, so the file can be read into it or written from it with
// O_DIRECT (BaseView::read_whole_direct, BlockWriter::put_framed).
inline constexpr uint64_t block_frame_size(uint64_t raw_length) noexcept { return round_up_direct(kBlockHeaderSize + raw_length); }
inline constexpr uint16_t kBlockFlagsCompressionMask = 0x000f;
inline constexpr uint64_t kDefaultBlockSize = 4ull * 1024 * 1024;
inline constexpr uint64_t kMinBlockSize = 64ull * 1024;
inline constexpr uint64_t kMaxBlockSize = 64ull * 1024 * 1024;
inline constexpr size_t kFanoutHexChars = 3;
inline constexpr char kTmpDirName[] = "tmp";

inline constexpr size_t kMagicOffset = 0;
inline constexpr size_t kVersionOffset = 8;
inline constexpr size_t kFlagsOffset = 10;
inline constexpr size_t kHeaderSizeOffset = 12;
inline constexpr size_t kPayloadLengthOffset = 16;
inline constexpr size_t kRawLengthOffset = 24;
inline constexpr size_t kDigestOffset = 32;
static_assert(kDigestOffset + kDigestSize == kBlockHeaderSize, "header fields must fill 64 bytes");
static_assert(sizeof kBlockMagic == kVersionOffset - kMagicOffset);

struct BlockHeader {
  uint16_t version = kBlockFormatVersion;
  uint16_t flags = 0;
  uint32_t header_size = kBlockHeaderSize;
  uint64_t payload_length = 0;
  uint64_t raw_length = 0;
  Digest digest{};
};

// The header of an uncompressed block of `len` bytes.
BlockHeader make_block_header(const Digest& digest, uint64_t len);

void encode_block_header(const BlockHeader& h, uint8_t (&out)[kBlockHeaderSize]);

// Decodes and checks everything version 1 fixes: magic, version, flags (no compression is
// defined yet, so any flag is unreadable), header size, payload length == raw length, length
// within the block size limit. On failure returns false and says why in `why`.
bool decode_block_header(const uint8_t (&in)[kBlockHeaderSize], BlockHeader& out, std::string& why);

inline bool is_valid_block_size(uint64_t n) {
  return n >= kMinBlockSize && n <= kMaxBlockSize && (n & (n - 1)) == 0;
}

}  // namespace blocksnap
