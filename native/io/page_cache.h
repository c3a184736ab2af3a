// Leaving the host's page cache as a scan found it. A snapshot reads the whole image once; left
// to itself the kernel would keep those gigabytes cached and evict what the VMs and the host
// actually use. Dropping every page after reading would be as bad the other way: it would evict
// pages the guest (host-cached disks) or anyone else had cached before the scan. So the scan
// records which pages of a range were resident when it first touched the range (read-ahead or
// read), and after reading drops only the pages it brought in itself.
//
// Residency comes from cachestat(2) when the range is cached whole or not at all, else from
// mincore() over a read-only mapping of the range (no page is faulted in).
// Where that is not possible the scan drops nothing: the cache is then merely not protected.
// The kernel drops whole folios only (up to 2 MiB), so a folio that was partly cached before
// stays cached: the error is always on the side of keeping a page.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace blocksnap {

// One byte per page of [offset, offset + len), bit 0 set when resident; empty when unknown.
// `offset` must be page aligned.
std::vector<uint8_t> resident_pages(int fd, uint64_t offset, size_t len);

// How many pages `pages` (from resident_pages) marks resident.
size_t resident_count(const std::vector<uint8_t>& pages) noexcept;

// posix_fadvise(DONTNEED) on each run of pages of [offset, offset + len) that `before` does not
// mark resident. Does nothing when `before` is empty (unknown).
void drop_pages_not_resident(int fd, uint64_t offset, size_t len, const std::vector<uint8_t>& before);

// The residency of ranges between their first touch and their read, shared by the scan threads.
class PageCacheKeeper {
 public:
  explicit PageCacheKeeper(int fd) : fd_(fd) {}

  // First touch of a range (before read-ahead is issued for it): records its residency.
  void touch(uint64_t offset, size_t len);

  // Around a read: returns the residency recorded at the first touch (or now, if none was).
  std::vector<uint8_t> before_read(uint64_t offset, size_t len);
  // True when every page of the range was resident at its first touch (or now, if it was not
  // touched): nothing of it was brought in by the scan, so it can be hashed in place and needs no
  // dropping. The record is then consumed; otherwise it stays for before_read().
  bool wholly_resident(uint64_t offset, size_t len);

  // After the data was read: drops the pages of the range the scan brought in.
  void after_read(uint64_t offset, size_t len, const std::vector<uint8_t>& before) const {
    drop_pages_not_resident(fd_, offset, len, before);
  }

 private:
  // Bounds the map when touched ranges are never read (a cancelled scan).
  static constexpr size_t kMaxPending = 256;

  int fd_;
  std::mutex mutex_;
  std::unordered_map<uint64_t, std::vector<uint8_t>> pending_;  // by range offset
};

}  // namespace blocksnap
