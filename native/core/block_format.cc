#include "core/block_format.h"

#include <cstring>

#include "core/little_endian.h"

namespace blocksnap {

BlockHeader make_block_header(const Digest& digest, uint64_t len) {
  BlockHeader h;
  h.payload_length = len;
  h.raw_length = len;
  h.digest = digest;
  return h;
}

void encode_block_header(const BlockHeader& h, uint8_t (&out)[kBlockHeaderSize]) {
  std::memcpy(out + kMagicOffset, kBlockMagic, sizeof kBlockMagic);
  put_le(out + kVersionOffset, h.version);
  put_le(out + kFlagsOffset, h.flags);
  put_le(out + kHeaderSizeOffset, h.header_size);
  put_le(out + kPayloadLengthOffset, h.payload_length);
  put_le(out + kRawLengthOffset, h.raw_length);
  std::memcpy(out + kDigestOffset, h.digest.data(), kDigestSize);
}

bool decode_block_header(const uint8_t (&in)[kBlockHeaderSize], BlockHeader& out, std::string& why) {
  if (std::memcmp(in + kMagicOffset, kBlockMagic, sizeof kBlockMagic) != 0) {
    why = "bad magic (not a blocksnap block file)";
    return false;
  }
  out.version = get_le<uint16_t>(in + kVersionOffset);
  out.flags = get_le<uint16_t>(in + kFlagsOffset);
  out.header_size = get_le<uint32_t>(in + kHeaderSizeOffset);
  out.payload_length = get_le<uint64_t>(in + kPayloadLengthOffset);
  out.raw_length = get_le<uint64_t>(in + kRawLengthOffset);
  std::memcpy(out.digest.data(), in + kDigestOffset, kDigestSize);

  if (out.version != kBlockFormatVersion) {
    why = "unsupported format version " + std::to_string(out.version);
    return false;
  }
  if ((out.flags & kBlockFlagsCompressionMask) != 0) {
    why = "unsupported compression algorithm " + std::to_string(out.flags & kBlockFlagsCompressionMask);
    return false;
  }
  if (out.flags != 0) {
    why = "reserved flag bits set (flags " + std::to_string(out.flags) + ")";
    return false;
  }
  if (out.header_size != kBlockHeaderSize) {
    why = "header size " + std::to_string(out.header_size) + ", expected " + std::to_string(kBlockHeaderSize);
    return false;
  }
  if (out.payload_length != out.raw_length) {
    why = "payload length " + std::to_string(out.payload_length) + " differs from raw length " +
          std::to_string(out.raw_length) + " in an uncompressed block";
    return false;
  }
  if (out.raw_length > kMaxBlockSize) {
    why = "raw length " + std::to_string(out.raw_length) + " exceeds the largest block size";
    return false;
  }
  return true;
}

}  // namespace blocksnap
