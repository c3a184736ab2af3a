// Granule marks: how far the SHA-256 of a stored block had got after each 64 KiB granule, kept
// beside the store in <data-dir>/granules/<hex[0..3]>/<hex> so that a copy-on-write volume can
// verify the few granules a small read or copy-up touches instead of the whole block
// (volume/base_view.h). Granule k is checked by hashing it from mark k-1 (the initial state for
// k = 0) and comparing with mark k; the last mark is the block's digest itself, so the chain ends
// in the name (sha256_piece_matches in core/digest.h).
//
// The marks are the states the block's own hash passes through, so whoever hashes a block gets
// them for nothing: a snapshot scan writes the file of every block it stores, and a writable
// volume writes it when it verifies a whole block that has none.
//
// A cache, never a source of truth: a file is written only from a payload whose digest was just
// computed or verified, and only ever describes that content (the name is the content digest, so
// a block stored again later has the same marks). Written to tmp/ and renamed, without fsync: a
// lost file costs one more whole-block verification, and a torn or damaged one fails its trailing
// checksum and is ignored and rewritten.
//
// Format (frozen, version 2; version 1 stored independent per-granule SHA-256s and is ignored;
// src/store/granule-format.ts knows only where the files are), little-endian:
//   0   8  magic "BSNAPGRN"
//   8   2  format version (2)
//   10  2  flags (0)
//   12  4  header size (64)
//   16  4  granule size (65536)
//   20  4  granule count (ceil(raw length / granule size))
//   24  8  raw length of the block
//   32  32 the block's content digest (SHA-256 of the whole block, as its file name)
//   64  count × 32  the mark after each granule, in order: SHA-256's running state (eight
//                   big-endian words, no padding) and, for the last granule (which may be
//                   short), the block's digest
//   ..  32 SHA-256 of every byte before it
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/digest.h"

namespace blocksnap {

inline constexpr char kGranuleMagic[8] = {'B', 'S', 'N', 'A', 'P', 'G', 'R', 'N'};
inline constexpr uint16_t kGranuleFileVersion = 2;
inline constexpr uint32_t kGranuleHeaderSize = 64;
inline constexpr uint32_t kGranuleSize = 64 * 1024;
inline constexpr char kGranuleDirName[] = "granules";

inline constexpr size_t kGranuleVersionOffset = 8;
inline constexpr size_t kGranuleFlagsOffset = 10;
inline constexpr size_t kGranuleHeaderSizeOffset = 12;
inline constexpr size_t kGranuleSizeOffset = 16;
inline constexpr size_t kGranuleCountOffset = 20;
inline constexpr size_t kGranuleRawLengthOffset = 24;
inline constexpr size_t kGranuleBlockDigestOffset = 32;
static_assert(kGranuleBlockDigestOffset + kDigestSize == kGranuleHeaderSize);

inline constexpr uint64_t granule_count(uint64_t raw_length) { return (raw_length + kGranuleSize - 1) / kGranuleSize; }
inline constexpr size_t granule_file_size(uint64_t count) { return kGranuleHeaderSize + count * kDigestSize + kDigestSize; }

struct GranuleDigests {
  Digest block{};
  uint64_t raw_length = 0;
  std::vector<Digest> marks;  // granule_count(raw_length); the last is `block`
};

// Whether bytes [k × granule size, + len) of the block, granule k whole, are what `g` describes.
bool granule_matches(const GranuleDigests& g, uint64_t k, const uint8_t* data, size_t len);

std::vector<uint8_t> encode_granule_file(const GranuleDigests& g);

// Checks everything: sizes, magic, version, flags, granule size, that it describes `block` of
// `raw_length` bytes (its last mark included), and the trailing checksum. On failure returns false and says why.
bool decode_granule_file(const uint8_t* data, size_t len, const Digest& block, uint64_t raw_length, GranuleDigests& out,
                         std::string& why);

std::string granule_file_path(const std::string& granule_dir, const Digest& d);

// The valid granule file of `block`, or nothing when it is absent, unreadable or fails
// decode_granule_file (a cache miss, never an error).
std::optional<GranuleDigests> load_granule_file(const std::string& granule_dir, const Digest& block, uint64_t raw_length);

// Writes the file through <granule_dir>/tmp/ and a rename, creating the directories on first
// use. Best effort: returns false when it could not (full disk, read-only store), since the
// cache only saves work.
bool store_granule_file(const std::string& granule_dir, const GranuleDigests& g);

}  // namespace blocksnap
