#include "core/hash_as_read.h"

#include "core/zero_detect.h"

namespace blocksnap {

HashAsRead::HashAsRead(const uint8_t* buf, size_t mark_piece) : buf_(buf) {
  if (mark_piece != 0) marked_.emplace(mark_piece);
  else plain_.emplace();
}

void HashAsRead::filled(size_t n) {
  if (n <= filled_) return;
  if (zero_so_far_ && is_all_zero(buf_ + filled_, n - filled_)) {
    filled_ = n;
    return;
  }
  zero_so_far_ = false;
  filled_ = n;
  hash_up_to(n);
}

void HashAsRead::hash_up_to(size_t n) {
  if (marked_) marked_->update(buf_ + hashed_, n - hashed_);
  else plain_->update(buf_ + hashed_, n - hashed_);
  hashed_ = n;
}

Digest HashAsRead::finish(std::vector<Digest>& marks) {
  hash_up_to(filled_);
  if (marked_) return marked_->finish(marks);
  marks.clear();
  return plain_->finish();
}

}  // namespace blocksnap
