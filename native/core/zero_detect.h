// Zero detection runs on every block before hashing: an all-zero block is recorded as ZERO and
// never hashed or stored, so this must run at memory bandwidth on zero data and return almost
// immediately on real data (which rarely starts with 64 zero bytes).
#pragma once

#include <cstddef>

namespace blocksnap {

bool is_all_zero(const void* data, size_t len) noexcept;

}  // namespace blocksnap
