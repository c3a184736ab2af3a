#include "io/page_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "io/file_io.h"

namespace blocksnap {

namespace {

size_t page_size() {
  static const size_t size = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

}  // namespace

std::vector<uint8_t> resident_pages(int fd, uint64_t offset, size_t len) {
  const size_t page = page_size();
  if (len == 0 || offset % page != 0) return {};
  const size_t pages = (len + page - 1) / page;
  // A range cached whole (a warm scan's every block) or not at all (a cold one's) is known from
  // one cachestat(2) call; mapping the range for mincore() and unmapping it is page-table work
  // that costs more on a guest whose page tables the host shadows.
  if (const std::optional<CachedPages> c = cached_pages(fd, offset, len)) {
    if (c->cached >= pages) return std::vector<uint8_t>(pages, 1);
    if (c->cached == 0) return std::vector<uint8_t>(pages, 0);
  }
  void* map = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (map == MAP_FAILED) return {};
  std::vector<uint8_t> vec(pages);
  const bool ok = ::mincore(map, len, vec.data()) == 0;
  ::munmap(map, len);
  if (!ok) return {};
  return vec;
}

size_t resident_count(const std::vector<uint8_t>& pages) noexcept {
  size_t n = 0;
  for (uint8_t b : pages) n += b & 1;
  return n;
}

void drop_pages_not_resident(int fd, uint64_t offset, size_t len, const std::vector<uint8_t>& before) {
  const size_t page = page_size();
  const size_t pages = (len + page - 1) / page;
  if (before.size() != pages) return;
  size_t i = 0;
  while (i < pages) {
    if (before[i] & 1) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < pages && !(before[j] & 1)) ++j;
    const uint64_t b = offset + uint64_t{i} * page;
    const uint64_t n = std::min<uint64_t>(uint64_t{j} * page, len) - uint64_t{i} * page;
    ::posix_fadvise(fd, static_cast<off_t>(b), static_cast<off_t>(n), POSIX_FADV_DONTNEED);
    i = j;
  }
}

void PageCacheKeeper::touch(uint64_t offset, size_t len) {
  std::vector<uint8_t> r = resident_pages(fd_, offset, len);
  std::lock_guard lock(mutex_);
  if (pending_.size() >= kMaxPending) pending_.clear();
  pending_.try_emplace(offset, std::move(r));
}

std::vector<uint8_t> PageCacheKeeper::before_read(uint64_t offset, size_t len) {
  {
    std::lock_guard lock(mutex_);
    auto it = pending_.find(offset);
    if (it != pending_.end()) {
      std::vector<uint8_t> r = std::move(it->second);
      pending_.erase(it);
      if (r.size() == (len + page_size() - 1) / page_size()) return r;
    }
  }
  return resident_pages(fd_, offset, len);
}

bool PageCacheKeeper::wholly_resident(uint64_t offset, size_t len) {
  const size_t pages = (len + page_size() - 1) / page_size();
  const auto all = [pages](const std::vector<uint8_t>& r) {
    return r.size() == pages && std::all_of(r.begin(), r.end(), [](uint8_t b) { return (b & 1) != 0; });
  };
  {
    std::lock_guard lock(mutex_);
    auto it = pending_.find(offset);
    if (it != pending_.end()) {
      if (!all(it->second)) return false;
      pending_.erase(it);
      return true;
    }
  }
  std::vector<uint8_t> r = resident_pages(fd_, offset, len);
  if (all(r)) return true;
  std::lock_guard lock(mutex_);
  if (pending_.size() >= kMaxPending) pending_.clear();
  pending_.try_emplace(offset, std::move(r));
  return false;
}

}  // namespace blocksnap
