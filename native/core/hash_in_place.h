// Hashing a range of a file straight from the page cache, through a read-only mapping, instead of
// copying it into a buffer first. On this class of machine the kernel's copy of a cached 4 MiB
// block costs about a third of hashing it, so a warm scan of mostly unchanged blocks spends a
// fifth of its time copying bytes it then throws away.
//
// The bytes behind a mapping can change while they are hashed (a running guest writes the
// image), so a digest from here may be used only to recognise content already stored (a block
// equal to its parent's, or a hash-only scan). A block that is to be stored is read into a buffer
// and hashed there, so that the stored bytes are exactly the hashed bytes.
//
// A file truncated under the mapping would raise SIGBUS on the next access; the hashing thread
// catches it (a process-wide handler that jumps back only into a thread inside hash_in_place
// and leaves every other SIGBUS to the handler that was there before) and reports the range as
// not hashable, so the caller falls back to reading it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/digest.h"

namespace blocksnap {

struct InPlaceHash {
  bool zero = false;  // every byte zero; `digest` is then not computed
  Digest digest{};
};

// The content of [offset, offset + len) of `fd`, hashed in place. nullopt when the range cannot
// be mapped (offset not page aligned, mmap refused) or the file shrank while it was hashed.
std::optional<InPlaceHash> hash_in_place(int fd, uint64_t offset, size_t len);

// Whether hashing in place is paying off in this job. A block hashed in place that turns out to
// differ is read and hashed a second time, so where most blocks differ (4 KiB writes scattered
// over the whole image) hashing in place would double the work. After 8 attempts, it is tried
// only while fewer than 1 in 8 attempts missed, and on every 32nd block otherwise, so that a run
// of changed blocks early in the image does not switch it off for good.
class InPlaceOdds {
 public:
  bool worth_trying(uint64_t block_index) const noexcept {
    const uint64_t tries = tries_.load(std::memory_order_relaxed);
    const uint64_t misses = misses_.load(std::memory_order_relaxed);
    return tries < 8 || misses * 8 < tries || block_index % 32 == 0;
  }
  void record(bool hit) noexcept {
    tries_.fetch_add(1, std::memory_order_relaxed);
    if (!hit) misses_.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t> tries_{0};
  std::atomic<uint64_t> misses_{0};
};

}  // namespace blocksnap
