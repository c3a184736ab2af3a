// The qcow2 on-disk format (QEMU docs/interop/qcow2.txt) as frozen constants, shared by the reader
// and the writer. All integers in a qcow2 file are big-endian.
#pragma once

#include <cstdint>
#include <cstring>

namespace blocksnap::qcow2 {

inline constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"

// Header field offsets.
inline constexpr size_t kOffMagic = 0, kOffVersion = 4, kOffBackingOffset = 8, kOffBackingSize = 16,
                        kOffClusterBits = 20, kOffSize = 24, kOffCryptMethod = 32, kOffL1Size = 36,
                        kOffL1Offset = 40, kOffRefcountTableOffset = 48, kOffRefcountTableClusters = 56,
                        kOffNbSnapshots = 60, kOffSnapshotsOffset = 64, kOffIncompatible = 72,
                        kOffCompatible = 80, kOffAutoclear = 88, kOffRefcountOrder = 96,
                        kOffHeaderLength = 100, kOffCompressionType = 104;

inline constexpr uint32_t kHeaderV2Size = 72;
inline constexpr uint32_t kHeaderV3MinSize = 104;
// What the writer emits for v3: the 104 mandatory bytes plus the compression type and padding.
inline constexpr uint32_t kHeaderV3Size = 112;

inline constexpr uint32_t kMinClusterBits = 9;   // 512 B
inline constexpr uint32_t kMaxClusterBits = 21;  // 2 MiB
// Extended L2 needs subclusters (cluster / 32) of at least 512 bytes.
inline constexpr uint32_t kMinExtendedL2ClusterBits = 14;
inline constexpr uint32_t kSubclustersPerCluster = 32;

// QEMU refuses L1 tables over 32 MiB (QCOW_MAX_L1_SIZE); so does this reader, which bounds the
// memory a hostile header can make it allocate.
inline constexpr uint64_t kMaxL1Bytes = 32ull << 20;
// Virtual sizes beyond 2^53 cannot be a JS number; QEMU's own limit is far above any real disk.
inline constexpr uint64_t kMaxVirtualSize = 1ull << 53;
inline constexpr uint32_t kMaxBackingNameSize = 1023;  // QEMU's limit

// Incompatible feature bits.
inline constexpr uint64_t kIncompatDirty = 1ull << 0;
inline constexpr uint64_t kIncompatCorrupt = 1ull << 1;
inline constexpr uint64_t kIncompatDataFile = 1ull << 2;
inline constexpr uint64_t kIncompatCompressionType = 1ull << 3;
inline constexpr uint64_t kIncompatExtendedL2 = 1ull << 4;
inline constexpr uint64_t kIncompatKnown = kIncompatDirty | kIncompatCorrupt | kIncompatDataFile |
                                           kIncompatCompressionType | kIncompatExtendedL2;
// Compatible feature bits.
inline constexpr uint64_t kCompatLazyRefcounts = 1ull << 0;
// Autoclear feature bits: a program that does not know one clears it when it writes the image.
inline constexpr uint64_t kAutoclearBitmaps = 1ull << 0;  // the bitmaps extension is consistent

inline constexpr uint8_t kCompressionZlib = 0;
inline constexpr uint8_t kCompressionZstd = 1;

// Header extension types.
inline constexpr uint32_t kExtEnd = 0x00000000;
inline constexpr uint32_t kExtBackingFormat = 0xe2792aca;
inline constexpr uint32_t kExtFeatureNames = 0x6803f857;
inline constexpr uint32_t kExtDataFile = 0x44415441;
inline constexpr uint32_t kExtBitmaps = 0x23852875;
// nb_bitmaps (4), reserved (4), bitmap directory size (8) and offset (8).
inline constexpr uint32_t kBitmapsExtSize = 24;

// L1 and standard L2 entries.
inline constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ull;  // bits 9-55
inline constexpr uint64_t kFlagCopied = 1ull << 63;             // refcount is exactly 1
inline constexpr uint64_t kFlagCompressed = 1ull << 62;
inline constexpr uint64_t kFlagZero = 1ull << 0;                 // v3: reads as zeros

inline uint16_t get_be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t get_be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
inline uint64_t get_be64(const uint8_t* p) { return uint64_t{get_be32(p)} << 32 | get_be32(p + 4); }
inline void put_be16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void put_be32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline void put_be64(uint8_t* p, uint64_t v) {
  put_be32(p, static_cast<uint32_t>(v >> 32));
  put_be32(p + 4, static_cast<uint32_t>(v));
}

}  // namespace blocksnap::qcow2
