// Bytes a job reads while it runs, owned by the job or lent to it: a view plus whatever keeps
// the memory alive. The addon lends a JS Buffer this way (workers/args.h, Options::held_bytes):
// a digest list is 32 bytes per block, 512 MiB for a 64 TiB image, and copying it on the JS
// thread before the job starts held the event loop for seconds.
//
// Two rules make the lending sound, and every caller keeps them:
//  - The reference keeps the Buffer object alive, not its memory: a Buffer lent to a job is never
//    transferred (postMessage) or detached while the job runs. The engine's views (readView,
//    Buffer.concat of manifest maps) are plain Buffers nothing else holds.
//  - The keeper of a JS Buffer releases a napi reference, which only the JS thread may do: the
//    last copy of such HeldBytes dies with its job, which the addon destroys on the JS thread
//    (the job's completion), never on a worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace blocksnap {

class HeldBytes {
 public:
  HeldBytes() = default;
  // Owned: takes the vector (implicit, so a vector can be given wherever these are taken).
  HeldBytes(std::vector<uint8_t> owned)  // NOLINT(google-explicit-constructor)
      : HeldBytes(std::make_shared<const std::vector<uint8_t>>(std::move(owned))) {}
  // Lent: `data` stays valid and unchanged while `keeper` (or a copy of it) lives.
  HeldBytes(const uint8_t* data, size_t size, std::shared_ptr<const void> keeper) : keeper_(std::move(keeper)), data_(data), size_(size) {}

  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

 private:
  explicit HeldBytes(std::shared_ptr<const std::vector<uint8_t>> v) : keeper_(v), data_(v->data()), size_(v->size()) {}

  std::shared_ptr<const void> keeper_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace blocksnap
