// Write-behind for the blocks a scan stores. Storing a block ends in an fsync, and a scan thread
// that waited for it would leave its core idle while the disk writes; so a scan thread hands the
// hashed buffer over and goes on reading and hashing the next block while writer threads store
// it (temp file, fsync, rename: BlockWriter::put).
//
// The buffers circulate in a fixed pool of `depth`: a submit returns a free buffer, waiting when
// all are in flight. Memory is therefore (scan threads + depth) × block size whatever the image
// size, and at most `depth` blocks are ever stored-but-not-yet-durable. The buffer handed over is
// the one that was hashed, so the stored bytes are exactly the hashed bytes.
//
// With a granule dir, a block that put() created also gets its granule file from the marks its
// hash left (core/granule_file.h), best effort and without fsync like every granule file: the scan
// pays one small file per new block and no extra hashing, and the first copy-on-write clone of
// the snapshot then verifies 64 KiB per first touch instead of 4 MiB.
//
// Framed: the buffers are frames (core/block_format.h), the payload at buffer + 64 with room for
// the header before it, so a block goes to its file without a copy (BlockWriter::put_framed).
//
// drain() must return before BlockWriter::sync() and before the snapshot is committed. A failure
// of any write fails the scan: submit() and drain() rethrow the first one, tagged with its block.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/block_writer.h"
#include "core/digest.h"

namespace blocksnap {

class WriteBehind {
 public:
  WriteBehind(BlockWriter& writer, size_t block_size, unsigned writers, unsigned depth, std::string granule_dir = {},
              bool framed = false);
  // Stops the writers after the block each is storing; blocks still queued are dropped (the scan
  // failed or was cancelled, so nothing will reference them).
  ~WriteBehind();
  // What the destructor does, early: after it, written() is final. Idempotent.
  void stop() noexcept;
  WriteBehind(const WriteBehind&) = delete;
  WriteBehind& operator=(const WriteBehind&) = delete;

  // Whether submit() wants the marks of each block (a granule dir, and blocks of more than one granule).
  bool wants_marks() const noexcept { return wants_marks_; }

  // Queues buf[0, len) (framed: buf[64, 64 + len)) to be stored under `digest` and returns a free
  // buffer of the same size.
  // `marks`: sha256_marked's, by granule, when wants_marks(); otherwise empty.
  AlignedBuffer submit(AlignedBuffer buf, const Digest& digest, size_t len, uint64_t block_index, std::vector<Digest> marks = {});

  // Waits until every queued block is stored. Throws the first failure.
  void drain();

  uint64_t blocks_written() const noexcept { return blocks_written_; }
  // The digests of the block files put() created (n × 32): a scan that fails or is cancelled, or
  // whose snapshot is not committed, hands them to the engine, which frees those nothing
  // references instead of leaving them for `store gc`. Final only after drain() or stop().
  std::vector<uint8_t> written() const;
  uint64_t bytes_written() const noexcept { return bytes_written_; }

 private:
  struct Item {
    AlignedBuffer buf;
    Digest digest;
    size_t len;
    uint64_t block_index;
    std::vector<Digest> marks;
  };

  void writer_loop();
  void rethrow_failure_locked();

  BlockWriter& writer_;
  const std::string granule_dir_;
  const bool wants_marks_;
  const bool framed_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;  // an item was queued, or stop
  std::condition_variable free_cv_;  // a buffer came back, or a failure
  std::deque<Item> queue_;
  std::vector<AlignedBuffer> free_;
  unsigned busy_ = 0;  // items taken by writers and not yet finished
  bool stop_ = false;
  std::exception_ptr failure_;
  uint64_t blocks_written_ = 0;
  uint64_t bytes_written_ = 0;
  std::vector<uint8_t> written_;
  std::vector<std::thread> threads_;
};

}  // namespace blocksnap
