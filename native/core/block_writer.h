// Puts blocks into the content-addressed store durably, shared by all threads of one scan.
//
// A block becomes visible only complete: header+payload go to tmp/<hex>.<random>, which is
// fsynced and then renamed to <hex[0..3]>/<hex>. What is not yet durable after put() is the
// directory entry of that rename, and the store directory's entry for its fanout directory, which
// another job may have created and not yet fsynced; sync() fsyncs every directory the scan
// depended on (the store directory whenever a fanout was touched), once each and several at a
// time, and must return before any snapshot referencing these blocks is committed.
// Deferring the directory fsyncs to sync() keeps them off the path of each block: a first
// snapshot into an empty store creates a fanout directory for nearly every block.
//
// Page cache: the first `keep_cached_bytes` a writer stores stay cached, every later block is
// written past the cache with O_DIRECT (io/direct_io.h: no copy into fresh page-cache pages),
// or, where the filesystem refuses that, through it and dropped once durable. A small
// incremental's few new blocks are what a replication started right after it reads (a policy
// with --replicate-to); a big snapshot still leaves the host's page cache to the VMs, but for
// those first bytes.
//
// Repair: a writer may be given the digests of blocks known to be damaged (a flipped payload or
// header byte found by `store verify` or by a reader; the catalog's `damaged` table). Such a
// file has the right size, so "present" would reuse it. Instead the first put of each of those
// digests writes a fresh file to tmp/ exactly like a new block (fsync) and renames it over the
// damaged one: the name always holds a whole file, the damaged one until the rename, the fresh
// one after. Later puts of the digest find the repaired file. Anything but a regular file under a
// block's name is damage too (a symlink is never taken for the file it leads to): the rename
// replaces it, never following it; an empty directory, which a rename cannot replace, is removed
// first (a crash between the two leaves the block missing, which the next scan writes again).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/digest.h"
#include "core/store_layout.h"

namespace blocksnap {

class BlockWriter {
 public:
  static constexpr uint64_t kDefaultKeepCachedBytes = 64ull << 20;
  explicit BlockWriter(std::string store_dir, uint64_t keep_cached_bytes = kDefaultKeepCachedBytes);

  // Stores `len` bytes whose SHA-256 is `digest`, unless a block file of the right size is
  // already there and the digest is not damaged (set_damaged). Returns true when this call
  // created (or repaired: a wrong-sized or damaged file) the file.
  // Throws NoSpace / PermissionDenied / IOError; a failed put leaves no temp file behind.
  bool put(const Digest& digest, const uint8_t* data, size_t len);
  // The same for a block in a frame (core/block_format.h): the payload at frame + 64.
  // The header is written into frame[0, 64), and the file goes from the frame without a copy.
  bool put_framed(const Digest& digest, uint8_t* frame, size_t len);

  // fsyncs the directories touched by put(). Throws IOError.
  void sync();

  // The damaged digests (n × 32 bytes, any order, duplicates allowed). Call before the first put.
  void set_damaged(const std::vector<uint8_t>& packed);
  // Whether `digest` is one of them and this writer has not rewritten it yet: a scan stores such
  // a block even where it would skip it otherwise (equal to the parent's). Cheap: a binary search
  // of a list that is empty but for a damaged store.
  bool needs_repair(const Digest& digest) const noexcept;
  // Whether the block file of `digest` is absent (ENOENT) or not a regular file (a symlink, a
  // directory, a FIFO in its place): removed by hand or lost, while a snapshot still names it. A scan stores such a block where it equals the parent's, as it does
  // a damaged one, so a snapshot of an unchanged disk writes it again rather than name the loss.
  // One lstat.
  bool missing(const Digest& digest) const;
  // The damaged digests this writer has rewritten, packed (n × 32), each once.
  std::vector<uint8_t> repaired() const;

  const std::string& store_dir() const noexcept { return store_dir_; }

 private:
  bool put_block(const Digest& digest, const uint8_t* data, size_t len, uint8_t* frame);
  std::string write_temp(const Digest& digest, const uint8_t* data, size_t len, uint8_t* frame);
  // Writes file[0, size)'s 4 KiB-aligned front to the new file `fd` with O_DIRECT and the rest
  // through the cache; false when nothing was written (too short, or O_DIRECT refused).
  bool write_direct_front(int fd, const std::string& tmp, const uint8_t* file, size_t size);
  // The same for a header and a payload apart, staged into one aligned buffer.
  bool write_staged_front(int fd, const std::string& tmp, const uint8_t* header, const uint8_t* data, size_t len);
  bool publish(const std::string& tmp, const Digest& digest, bool replace);
  // An empty directory under a block's name, which rename(2) cannot replace, goes (rmdir); a
  // directory with anything in it stays, and the put fails BlockCorrupt saying to remove it.
  void remove_directory_in_way(const std::string& path, const Digest& digest);
  void make_dir(const std::string& dir);

  // Index of `digest` in damaged_, or -1.
  long damaged_index(const Digest& digest) const noexcept;

  std::string store_dir_;
  // Sorted damaged digests and, per digest, 0 = to repair, 1 = being repaired, 2 = repaired.
  std::vector<Digest> damaged_;
  std::unique_ptr<std::atomic<uint8_t>[]> repair_state_;
  const uint64_t keep_cached_bytes_;
  std::atomic<uint64_t> kept_cached_bytes_{0};
  std::atomic<bool> direct_ok_{true};  // cleared when the filesystem refuses O_DIRECT
  std::string tmp_dir_;
  std::array<std::atomic<bool>, kFanoutCount> touched_{};
  std::atomic<bool> store_dir_touched_{false};  // a fanout or the tmp directory was created
};

}  // namespace blocksnap
