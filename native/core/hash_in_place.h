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

// Whether hashing in place is faster than copying on this machine, now. Mapping a block costs
// page-table work that copying does not; where that work is dear (a guest whose page tables the
// host shadows) and with how dear depending on the host's state, it can cost more than the copy
// it saves: a warm re-snapshot hashed in place ran at 55% of OpenSSL's two-thread rate right
// after other programs had churned memory, and at 79% copying, where alone in place gave 82-90%.
// So both paths are timed on blocks the page cache holds whole, and the faster one is used;
// every 16th such block takes the other, so that the choice follows the machine.
class InPlaceSpeed {
 public:
  // For a block that could be hashed either way.
  bool use_in_place(uint64_t block_index) const noexcept { return prefer_in_place() != (block_index % 16 == 7); }
  void record(bool in_place, uint64_t ns, uint64_t bytes) noexcept {
    ns_[in_place].fetch_add(ns, std::memory_order_relaxed);
    bytes_[in_place].fetch_add(bytes, std::memory_order_relaxed);
  }
  bool prefer_in_place() const noexcept {
    const double copy_bytes = static_cast<double>(bytes_[0].load(std::memory_order_relaxed));
    const double place_bytes = static_cast<double>(bytes_[1].load(std::memory_order_relaxed));
    // Until both have been timed, in place: where mapping is cheap it saves the copy.
    if (copy_bytes == 0 || place_bytes == 0) return true;
    return static_cast<double>(ns_[1].load(std::memory_order_relaxed)) / place_bytes <=
           static_cast<double>(ns_[0].load(std::memory_order_relaxed)) / copy_bytes;
  }

 private:
  std::atomic<uint64_t> ns_[2]{};     // [copy, in place]
  std::atomic<uint64_t> bytes_[2]{};
};

}  // namespace blocksnap
