// Paths of the block store (src/store/format.ts): <store>/<hex[0..3]>/<hex> and <store>/tmp/.
#pragma once

#include <cstddef>
#include <string>

#include "core/block_format.h"
#include "core/digest.h"

namespace blocksnap {

// 16^3 fanout directories.
inline constexpr size_t kFanoutCount = size_t{1} << (4 * kFanoutHexChars);

// The fanout directory of a digest as a number: its first three hex digits.
static_assert(kFanoutHexChars == 3, "fanout_index() reads exactly three hex digits");
inline size_t fanout_index(const Digest& d) { return (size_t{d[0]} << 4) | (d[1] >> 4); }

std::string fanout_dir_path(const std::string& store_dir, const Digest& d);
std::string fanout_dir_path(const std::string& store_dir, size_t fanout_index);
std::string block_file_path(const std::string& store_dir, const Digest& d);
std::string tmp_dir_path(const std::string& store_dir);

}  // namespace blocksnap
