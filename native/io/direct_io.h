// Reading data the page cache does not hold with O_DIRECT. A cold block read through the cache
// costs a page-cache fill, a copy to the buffer and a DONTNEED afterwards (io/page_cache.h), about
// 0.5 s of kernel CPU per GiB here, and the read-ahead reaches the disk in requests of about
// 1 MiB. Read directly into a buffer backed by huge pages (core/aligned_buffer.h), the same block
// goes to the disk as one or two requests of up to 4 MiB with almost no kernel CPU; on a virtual
// disk, whose cost is per request, that is what brings a cold scan to the speed of `dd`.
//
// Direct reads only pay off when the buffer is physically contiguous: in 4 KiB pages a request
// carries at most max_segments pages (254 on virtio, under 1 MiB), smaller than the cache's
// read-ahead. So they are used only where transparent huge pages can be had.
//
// Writing past the page cache: a block stored through the cache is copied into freshly
// allocated page-cache pages, written back at the fsync and then dropped (the store keeps only
// its first bytes cached, core/block_writer.h). On a virtual machine whose freed memory goes back
// to the host (virtio-balloon free page reporting, as on Firecracker) each of those fresh pages is
// faulted in again on the host: measured here, the kernel's copy into new files' pages took a
// fifth of a served snapshot's CPU, where the same bytes written with O_DIRECT cost almost none
// and reached the disk faster.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "io/unique_fd.h"

namespace blocksnap {

// Both the file offset and the buffer: 4 KiB satisfies every filesystem's O_DIRECT alignment.
constexpr size_t kDirectAlignment = 4096;

// Whether a buffer, length and file offset all meet that alignment.
inline bool aligned_for_direct(const void* buf, size_t len, uint64_t offset) noexcept {
  return offset % kDirectAlignment == 0 && len % kDirectAlignment == 0 && reinterpret_cast<uintptr_t>(buf) % kDirectAlignment == 0;
}

// `n` rounded up to that alignment: the bytes a direct read of an n-byte file asks for.
constexpr uint64_t round_up_direct(uint64_t n) noexcept { return (n + kDirectAlignment - 1) / kDirectAlignment * kDirectAlignment; }

// A second open file of what `fd` has open, for O_DIRECT reads, or writes when `writable`
// (reopened through /proc/self/fd, never by path, so it is the very inode that was checked).
// Empty when the filesystem refuses O_DIRECT, /proc is missing, or huge pages are off.
UniqueFd open_direct_twin(int fd, bool writable = false);

// Whether direct reads are worth trying on this host: transparent huge pages are not off.
bool direct_reads_available();

// Reads [offset, offset + len) with O_DIRECT into `buf`; false, with nothing promised about
// `buf`, when the request is not aligned for it or the filesystem refuses it (EINVAL), so the
// caller reads through the page cache instead. `got` is the count read (short only at end of
// file). Other errors throw like read_at.
bool read_direct(int fd, uint8_t* buf, size_t len, uint64_t offset, const std::string& path, size_t& got);

// Writes buf[0, len) at `offset` of `fd` with O_DIRECT: through `twin` (a writable
// open_direct_twin of fd) when given, else with the flag set on `fd` for this write only (cleared
// again before returning, so later writes to `fd` go through the cache; not for an fd other
// threads write through meanwhile). False, with nothing written, when the request is not aligned
// or the filesystem refuses O_DIRECT (EINVAL): the caller then writes through the cache. Other
// errors throw like write_at.
bool write_direct(int fd, const uint8_t* buf, size_t len, uint64_t offset, const std::string& path, int twin = -1);

}  // namespace blocksnap
