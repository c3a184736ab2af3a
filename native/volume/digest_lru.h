// A least-recently-used map keyed by block digest, O(1) per lookup, for the per-volume caches of
// open block files, verified payloads and granule marks (volume/base_view.h). Not thread-safe:
// its owner holds a lock around every call.
//
// O(1) matters for the open files: a random read spread over more blocks than the cache holds
// used to scan the whole list and shift it on every miss.
//
// Each entry remembers when it was last put or found, so that what an idle volume keeps (its
// open block files above all) can be let go after a while (evict_unused_since).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstring>
#include <list>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/digest.h"

namespace blocksnap {

template <typename T>
class DigestLru {
 public:
  using Clock = std::chrono::steady_clock;

  size_t size() const noexcept { return order_.size(); }

  // The value for `d`, now the most recent; null when absent.
  T* find(const Digest& d) {
    auto it = index_.find(d);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.end(), order_, it->second);
    it->second->used = Clock::now();
    return &it->second->value;
  }

  // Sets `d` to `value`, now the most recent. Returns true when `d` is new.
  bool put(const Digest& d, T value) {
    if (T* hit = find(d)) {
      *hit = std::move(value);
      return false;
    }
    order_.push_back(Entry{d, std::move(value), Clock::now()});
    index_.emplace(d, std::prev(order_.end()));
    return true;
  }

  // Drops the entry of `d`; false when absent. As evict_oldest, the value is destroyed here.
  bool erase(const Digest& d) {
    auto it = index_.find(d);
    if (it == index_.end()) return false;
    order_.erase(it->second);
    index_.erase(it);
    return true;
  }

  // Drops the least recent entry; false when empty. The value is destroyed here, under the
  // owner's lock: a shared_ptr value whose last reference this was closes its file here.
  bool evict_oldest() {
    if (order_.empty()) return false;
    index_.erase(order_.front().digest);
    order_.pop_front();
    return true;
  }

  // Takes out every entry last put or found at or before `cutoff`, least recent first, and
  // returns their values, so that the owner can destroy them (close files) after its lock.
  std::vector<T> evict_unused_since(Clock::time_point cutoff) {
    std::vector<T> out;
    // Least recent first: the first entry used after the cutoff ends the run.
    while (!order_.empty() && order_.front().used <= cutoff) {
      out.push_back(std::move(order_.front().value));
      index_.erase(order_.front().digest);
      order_.pop_front();
    }
    return out;
  }

 private:
  struct Entry {
    Digest digest;
    T value;
    Clock::time_point used;
  };
  using Order = std::list<Entry>;
  Order order_;  // least recent first
  std::unordered_map<Digest, typename Order::iterator, DigestWordHash> index_;
};

}  // namespace blocksnap
