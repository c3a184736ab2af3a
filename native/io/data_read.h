// Reading a range of a raw image through its extent map: what a scan reads to hash a block and
// what a rollback reads to compare one. Holes read as zeros with no I/O; a range of which no page
// is cached is read with O_DIRECT where a direct twin of the file is open (io/direct_io.h), since
// a cold read through the cache costs a page-cache fill and a copy that, on this project's test
// machine, made a cold rollback's reads take twice as long as a scan's of the same image.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "io/extents.h"

namespace blocksnap {

// Reads [offset, offset + len) of `fd` into buf. `pieces` are the data extents overlapping the
// range (ExtentMap::overlapping); what they do not cover, and what the file no longer holds past
// its end, reads as zeros. `direct` is an open_direct_twin of fd, or -1 for none; it is used only
// when `cached_before` (the range's residency, io/page_cache.h) shows no page cached. Returns the
// bytes read from the file. Errors throw like read_at.
uint64_t read_data_range(int fd, int direct, std::span<const Extent> pieces, uint64_t offset, size_t len, uint8_t* buf,
                         const std::vector<uint8_t>& cached_before, const std::string& path);

// How much of a range read through the page cache read_data_range reads at a time when it
// reports its progress: small enough that a piece is still in the CPU's L2 cache when the caller
// hashes it, large enough that the system calls cost little (measured in bench/README.md).
inline constexpr size_t kFillPiece = 256 * 1024;

// Told that buf[0, n) of the range now holds its final content; n grows and ends at the range's
// length.
using FilledFn = std::function<void(size_t n)>;

// read_data_range, telling `filled` as the buffer fills: through the page cache kFillPiece at a
// time, a direct read an extent at a time.
uint64_t read_data_range(int fd, int direct, std::span<const Extent> pieces, uint64_t offset, size_t len, uint8_t* buf,
                         const std::vector<uint8_t>& cached_before, const std::string& path, const FilledFn& filled);

}  // namespace blocksnap
