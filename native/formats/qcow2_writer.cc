#include "formats/qcow2_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/aligned_buffer.h"
#include "core/error.h"
#include "core/image_file.h"
#include "core/zero_detect.h"
#include "formats/qcow2_format.h"
#include "formats/store_source.h"
#include "io/file_attributes.h"
#include "io/inode_flags.h"
#include "io/file_io.h"
#include "io/qemu_lock.h"

namespace blocksnap {

using namespace qcow2;

namespace {

std::string base_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The name a rollback renames over must still be the image whose locks it holds: otherwise the
// image was moved or replaced meanwhile, and what the name is now is not ours to replace.
void require_entry(int dir, const std::string& name, const struct stat& locked, const std::string& path) {
  struct stat entry;
  if (::fstatat(dir, name.c_str(), &entry, AT_SYMLINK_NOFOLLOW) == 0 && entry.st_dev == locked.st_dev &&
      entry.st_ino == locked.st_ino)
    return;
  Error e(ErrorCode::ImageReplaced, path + " is no longer the image this rollback locked (moved, replaced, or a symlink swapped into its path); refusing to replace it");
  e.path = path;
  throw e;
}

uint64_t div_round_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// Writes the 4 KiB pages of src[0, len) that hold a non-zero byte, a run of them at a time, and
// leaves the all-zero ones holes (the file is sized once complete, so they read as zeros). A
// cluster is mostly zeros wherever the guest wrote only part of it, and an L2 or refcount
// cluster is mostly zeros in a small image: with 2 MiB clusters, writing them whole made a
// rolled-back image about twice the size QEMU's own is for the same content.
void write_nonzero_pages(int fd, const uint8_t* src, uint64_t len, uint64_t at, const std::string& path) {
  constexpr uint64_t kPage = 4096;
  uint64_t run = 0, run_len = 0;
  for (uint64_t off = 0; off < len; off += kPage) {
    const uint64_t n = std::min(kPage, len - off);
    if (!is_all_zero(src + off, static_cast<size_t>(n))) {
      if (run_len == 0) run = off;
      run_len += n;
      continue;
    }
    if (run_len != 0) write_at(fd, src + run, run_len, at + run, path);
    run_len = 0;
  }
  if (run_len != 0) write_at(fd, src + run, run_len, at + run, path);
}

// Appends clusters at the end of the image; coalesces consecutive data clusters into one write.
class ClusterAppender {
 public:
  ClusterAppender(int fd, const std::string& path, uint64_t cluster, uint64_t first_free)
      : fd_(fd), path_(path), cluster_(cluster), next_(first_free) {}

  uint64_t next() const { return next_; }

  // Reserves a cluster whose bytes are `src` (valid until flush()); nullptr leaves it a hole.
  uint64_t append(const uint8_t* src) {
    const uint64_t at = next_;
    next_ += cluster_;
    if (src == nullptr) {
      flush();
      return at;
    }
    if (run_len_ != 0 && run_src_ + run_len_ == src && run_host_ + run_len_ == at) {
      run_len_ += cluster_;
    } else {
      flush();
      run_src_ = src, run_host_ = at, run_len_ = cluster_;
    }
    return at;
  }

  void flush() {
    if (run_len_ == 0) return;
    write_nonzero_pages(fd_, run_src_, run_len_, run_host_, path_);
    run_len_ = 0;
  }

 private:
  int fd_;
  const std::string& path_;
  uint64_t cluster_;
  uint64_t next_;
  const uint8_t* run_src_ = nullptr;
  uint64_t run_host_ = 0, run_len_ = 0;
};

std::vector<uint8_t> header_cluster(const Qcow2ImageOptions& p, uint64_t size, uint64_t cluster, uint64_t l1_entries,
                                    uint64_t l1_offset, uint64_t reftable_offset, uint64_t reftable_clusters) {
  std::vector<uint8_t> h(cluster, 0);
  put_be32(&h[kOffMagic], kMagic);
  put_be32(&h[kOffVersion], p.version);
  put_be32(&h[kOffClusterBits], p.cluster_bits);
  put_be64(&h[kOffSize], size);
  put_be32(&h[kOffL1Size], static_cast<uint32_t>(l1_entries));
  put_be64(&h[kOffL1Offset], l1_offset);
  put_be64(&h[kOffRefcountTableOffset], reftable_offset);
  put_be32(&h[kOffRefcountTableClusters], static_cast<uint32_t>(reftable_clusters));
  uint64_t off = kHeaderV2Size;
  if (p.version == 3) {
    put_be32(&h[kOffRefcountOrder], 4);
    put_be32(&h[kOffHeaderLength], kHeaderV3Size);
    if (p.compression_type != kCompressionZlib) {
      put_be64(&h[kOffIncompatible], kIncompatCompressionType);
      h[kOffCompressionType] = p.compression_type;
    }
    off = kHeaderV3Size;
  }
  if (!p.backing_file.empty()) {
    const uint64_t fmt_len = p.backing_format.size();
    const uint64_t need = off + (fmt_len ? 8 + ((fmt_len + 7) & ~uint64_t{7}) : 0) + 8 + p.backing_file.size();
    if (need > cluster) throw Error(ErrorCode::InvalidArgument, "the backing file name does not fit in the header cluster");
    if (fmt_len) {
      put_be32(&h[off], kExtBackingFormat);
      put_be32(&h[off + 4], static_cast<uint32_t>(fmt_len));
      std::memcpy(&h[off + 8], p.backing_format.data(), fmt_len);
      off += 8 + ((fmt_len + 7) & ~uint64_t{7});
    }
    off += 8;  // the end-of-extensions marker: eight zero bytes
    put_be64(&h[kOffBackingOffset], off);
    put_be32(&h[kOffBackingSize], static_cast<uint32_t>(p.backing_file.size()));
    std::memcpy(&h[off], p.backing_file.data(), p.backing_file.size());
  }
  return h;
}

void validate(const Qcow2ImageOptions& p, uint64_t size_bytes) {
  if (p.cluster_bits < kMinClusterBits || p.cluster_bits > kMaxClusterBits)
    throw Error(ErrorCode::InvalidArgument, "cluster bits must be 9..21");
  if (p.version != 2 && p.version != 3) throw Error(ErrorCode::InvalidArgument, "qcow2 version must be 2 or 3");
  if (p.compression_type != kCompressionZlib && p.compression_type != kCompressionZstd)
    throw Error(ErrorCode::InvalidArgument, "the compression type must be zlib or zstd");
  if (p.compression_type != kCompressionZlib && p.version < 3)
    throw Error(ErrorCode::InvalidArgument, "a qcow2 version 2 image has no compression type but zlib");
  if (p.chunk_size < 4096 || p.chunk_size > (uint64_t{64} << 20) || (p.chunk_size & (p.chunk_size - 1)) != 0)
    throw Error(ErrorCode::InvalidArgument, "the read size must be a power of two from 4 KiB to 64 MiB");
  if (size_bytes > kMaxVirtualSize) throw Error(ErrorCode::InvalidArgument, "virtual size too large");
  if (p.backing_file.size() > kMaxBackingNameSize || p.backing_file.find('\0') != std::string::npos)
    throw Error(ErrorCode::InvalidArgument, "invalid backing file name");
  if (!p.backing_file.empty() && p.backing_format != "raw" && p.backing_format != "qcow2")
    throw Error(ErrorCode::InvalidArgument, "backing format must be raw or qcow2");
}

// `under`: the backing chain the image names, as read now (open_backing_chain), or null.
Qcow2WriteResult write_qcow2(const BlockSource& source, const Qcow2ImageOptions& p, JobControl& control,
                             const ProgressFn& progress, const BlockSource* under);

}  // namespace

Qcow2WriteResult write_qcow2_image(const Qcow2WriteParams& params, JobControl& control, const ProgressFn& progress) {
  const StoreSource source(params.store_dir, params.block_size, params.size_bytes, params.digests);
  Qcow2ImageOptions options = params;
  options.chunk_size = params.block_size;  // whole blocks: each is read and verified once
  std::unique_ptr<BlockSource> backing;
  if (!params.backing_file.empty()) {
    // Without it the image would hold the backing file's data wherever the snapshot does.
    if (params.checked_backing.empty())
      throw Error(ErrorCode::InvalidArgument, "an image with a backing file is written against its checked backing chain");
    backing = open_backing_chain(params.image_path, params.backing_file, params.backing_format, params.checked_backing);
  }
  Qcow2WriteResult result = write_qcow2(source, options, control, progress, backing.get());
  // bytes_written stays the writer's: the data clusters written, which in a block that partly
  // equals the backing file, or is partly zero, are fewer than the block's bytes.
  result.blocks_written = source.blocks_read();
  result.blocks_from_backing = source.blocks_known();
  return result;
}

Qcow2WriteResult write_qcow2_from_source(const BlockSource& source, const Qcow2ImageOptions& options, JobControl& control,
                                         const ProgressFn& progress) {
  return write_qcow2(source, options, control, progress, nullptr);
}

namespace {

Qcow2WriteResult write_qcow2(const BlockSource& source, const Qcow2ImageOptions& p, JobControl& control,
                             const ProgressFn& progress, const BlockSource* under) {
  const uint64_t size_bytes = source.size();
  validate(p, size_bytes);
  const uint64_t size = (size_bytes + 511) & ~uint64_t{511};
  const uint64_t cluster = uint64_t{1} << p.cluster_bits;
  const uint64_t l2_entries = cluster / 8;
  const uint64_t clusters = div_round_up(size, cluster);
  const uint64_t l1_entries = div_round_up(clusters, l2_entries);
  if (l1_entries * 8 > kMaxL1Bytes) throw Error(ErrorCode::InvalidArgument, "the image would need an L1 table over 32 MiB; use larger clusters");
  // An empty image has no L1 table: a cluster reserved for one would be leaked (qemu-img check).
  const uint64_t l1_clusters = div_round_up(l1_entries * 8, cluster);
  const bool backing = !p.backing_file.empty();
  // Progress is the data read: the source's (a snapshot's blocks that are not ZERO) and the
  // backing chain's, the clusters it allocates; a sparse image's holes cost nothing to lay out.
  // Weighed by the virtual size, a 1 TiB image holding 2 GiB would sit near 0 % and jump to 100.
  const auto chain_part = [&](uint64_t base, uint64_t want) -> uint64_t {
    return under != nullptr && base < under->size() ? std::min<uint64_t>(want, under->size() - base) : 0;
  };
  const auto work_in = [&](uint64_t base, uint64_t want) {
    return source.data_bytes(base, want) + (under != nullptr ? under->data_bytes(base, chain_part(base, want)) : 0);
  };
  control.set_total(work_in(0, size_bytes));
  // A rollback (`replace`) leaves the disk as it was until its new image is renamed over it: a
  // cancel while the image is laid out, compared with the backing chain, changes nothing.
  if (!p.replace.empty()) control.set_phase(JobPhase::Comparing);
  if (progress) progress(control.done(), control.total());

  // Rollback: QEMU must not open either file while the new one is written and renamed. Both
  // names are in one directory, opened once: the new one is created, named and renamed over the
  // old one through it, and the old name must still be the file locked here, so a directory of the
  // path swapped for a symlink meanwhile sends neither elsewhere. The new name is the caller's,
  // random: nothing found under it is removed (whoever may write the directory could have put it
  // there, and it is not ours), so a name taken fails FileExists before anything is written.
  UniqueFd replaced_lock;
  struct stat replaced {};
  UniqueFd held_dir;
  std::string replace_name;
  if (!p.replace.empty()) {
    if (parent_dir(p.replace) != parent_dir(p.image_path))
      throw Error(ErrorCode::InvalidArgument, "the new image must be written in the directory of the one it replaces");
    held_dir = open_image_dir(parent_dir(p.replace));
    replace_name = base_name(p.replace);
    replaced_lock = open_and_hold_qemu_locks(p.replace);
    require_identity(replaced_lock.get(), p.replace_id, p.replace);
    if (::fstat(replaced_lock.get(), &replaced) != 0) throw Error::system(errno, "fstat", p.replace);
    require_entry(held_dir.get(), replace_name, replaced, p.replace);
  }
  ImageFile image = open_image_for_write(p.image_path, true, held_dir ? held_dir.get() : p.dir ? p.dir->get() : -1, p.owner);
  RemoveCreatedOnFailure cleanup(image);
  const int fd = image.fd.get();
  const std::string& path = p.image_path;
  if (!p.replace.empty()) {
    hold_qemu_locks(fd, path);
    // While the file is empty: btrfs takes NOCOW only then, and compression acts on what is
    // written after it is set. The other flags come with the rest of the attributes at the end.
    apply_carried_flags(fd, read_carried_flags(replaced_lock.get(), p.replace), true, path, p.replace);
  }

  const uint64_t unit = std::max(p.chunk_size, cluster);  // whole chunks and whole clusters
  const uint64_t units = div_round_up(size, unit);
  std::vector<uint64_t> l1(l1_entries, 0);
  std::vector<uint8_t> l2(cluster, 0);
  uint64_t l2_index = UINT64_MAX;  // which L1 entry `l2` belongs to
  bool l2_used = false;
  ClusterAppender out(fd, path, cluster, (1 + l1_clusters) * cluster);
  Qcow2WriteResult result;
  result.size_bytes = size;

  auto flush_l2 = [&]() {
    if (l2_index != UINT64_MAX && l2_used) {
      out.flush();
      const uint64_t at = out.append(l2.data());
      out.flush();
      l1[l2_index] = at | kFlagCopied;
    }
    std::fill(l2.begin(), l2.end(), 0);
    l2_used = false;
  };

  // Threads read (and for the store, verify) units in parallel; each then waits for its turn and lays its unit
  // out in guest order (allocation, L2 entries, writes), so the file stays strictly sequential.
  std::mutex turn_mutex;
  std::condition_variable turn_cv;
  uint64_t next_turn = 0;
  bool failed = false;
  std::atomic<uint64_t> chunks_written{0}, bytes_written{0}, clusters_zeroed{0};

  ParallelRun run(control, units);
  run.run(effective_threads(p.threads, units), [&](ParallelRun& job) {
    AlignedBuffer buf(unit);
    std::optional<AlignedBuffer> below;  // the backing chain's content of the unit
    if (under) below.emplace(unit);
    uint64_t u;
    while (job.next(u)) {
      const uint64_t base = u * unit;
      const uint64_t unit_len = std::min(unit, size - base);
      try {
        // The tail past the source's end (up to the sector, or the last cluster) reads as zeros.
        const size_t want = static_cast<size_t>(std::min(unit_len, size_bytes - base));
        // What the unit reads as where the image leaves it unallocated: the chain, zeros past its end.
        bool below_zero = true;
        if (under) {
          const uint64_t from_chain = chain_part(base, want);
          if (from_chain != 0 && !under->read(base, static_cast<size_t>(from_chain), below->data()).zero) {
            below_zero = false;
            std::memset(below->data() + from_chain, 0, unit - from_chain);
          }
        }
        const SourceRead r = below_zero ? source.read(base, want, buf.data())
                                        : source.read_knowing(base, want, buf.data(), below->data());
        const bool unit_zero = r.zero;
        if (!unit_zero) std::memset(buf.data() + want, 0, unit - want);
        uint64_t data_bytes = 0, zeroed = 0;
        std::unique_lock lock(turn_mutex);
        // Units are claimed in order, so every earlier unit is held by a running thread; only a
        // failure (which ends the job) can keep a turn from coming.
        turn_cv.wait(lock, [&] { return next_turn == u || failed; });
        if (failed) return;
        for (uint64_t off = 0; off < unit_len; off += cluster) {
          const uint64_t c = (base + off) / cluster;
          if (c / l2_entries != l2_index) {
            flush_l2();
            l2_index = c / l2_entries;
          }
          uint64_t entry = 0;
          const bool zero_here = unit_zero || is_all_zero(buf.data() + off, cluster);
          const bool as_below = under != nullptr && (below_zero ? zero_here
                                                                : zero_here ? is_all_zero(below->data() + off, cluster)
                                                                            : std::memcmp(buf.data() + off, below->data() + off, cluster) == 0);
          if (as_below) {
            // Unallocated: it reads the same through to the backing chain.
          } else if (!zero_here) {
            entry = out.append(buf.data() + off) | kFlagCopied;
            data_bytes += std::min(cluster, size_bytes - (base + off));
          } else if (backing) {
            entry = p.version >= 3 ? kFlagZero : (out.append(nullptr) | kFlagCopied);
            ++zeroed;
          }
          if (entry != 0) {
            put_be64(&l2[(c % l2_entries) * 8], entry);
            l2_used = true;
          }
        }
        out.flush();
        ++next_turn;
        lock.unlock();
        turn_cv.notify_all();
        if (data_bytes != 0) {
          chunks_written.fetch_add(1, std::memory_order_relaxed);
          bytes_written.fetch_add(data_bytes, std::memory_order_relaxed);
        }
        clusters_zeroed.fetch_add(zeroed, std::memory_order_relaxed);
        control.add_done(work_in(base, want));
      } catch (...) {
        {
          std::lock_guard lock(turn_mutex);
          failed = true;
        }
        turn_cv.notify_all();
        throw;
      }
    }
  }, progress);
  flush_l2();
  out.flush();
  result.blocks_written = chunks_written;
  result.bytes_written = bytes_written;
  result.clusters_zeroed = clusters_zeroed;
  result.progress_total = control.total();

  // Refcounts (16 bit): R blocks and T table clusters at the end must count themselves too.
  const uint64_t used = out.next() / cluster;
  const uint64_t per_block = cluster / 2, per_table = cluster / 8;
  uint64_t blocks = div_round_up(used, per_block), table = 0;
  for (;;) {
    table = div_round_up(blocks, per_table);
    const uint64_t need = div_round_up(used + blocks + table, per_block);
    if (need <= blocks) break;
    blocks = need;
  }
  const uint64_t total = used + blocks + table;
  std::vector<uint8_t> rc(cluster);
  std::vector<uint8_t> reftable(table * cluster, 0);
  for (uint64_t b = 0; b < blocks; ++b) {
    std::fill(rc.begin(), rc.end(), 0);
    for (uint64_t k = 0; k < per_block && b * per_block + k < total; ++k) put_be16(&rc[k * 2], 1);
    const uint64_t at = (used + b) * cluster;
    write_nonzero_pages(fd, rc.data(), cluster, at, path);
    put_be64(&reftable[b * 8], at);
  }
  const uint64_t reftable_offset = (used + blocks) * cluster;
  write_nonzero_pages(fd, reftable.data(), reftable.size(), reftable_offset, path);

  std::vector<uint8_t> l1_bytes(l1_clusters * cluster, 0);
  for (uint64_t i = 0; i < l1_entries; ++i) put_be64(&l1_bytes[i * 8], l1[i]);
  write_nonzero_pages(fd, l1_bytes.data(), l1_bytes.size(), cluster, path);
  const std::vector<uint8_t> header = header_cluster(p, size, cluster, l1_entries, cluster, reftable_offset, table);
  write_nonzero_pages(fd, header.data(), header.size(), 0, path);
  // Zero pages were left unwritten, the last cluster's tail among them: the file ends where its
  // last cluster does.
  if (::ftruncate(fd, static_cast<off_t>(total * cluster)) != 0) throw Error::system(errno, "ftruncate", path);
  result.file_bytes = total * cluster;

  // Before the fsync, which makes them durable with the rest. The engine asked the same of a
  // scratch file before it journaled the rollback (check_attributes_copyable); the disk's
  // attributes may have changed since, so this may still refuse.
  if (!p.replace.empty()) copy_file_attributes(replaced_lock.get(), fd, p.replace, path);
  fsync_file(fd, path);
  // Named only now (image_file.h): a kill while it was written left nothing beside the disk. A
  // rollback's new image gets its temp name and is renamed over the disk at once (rename(2) can
  // replace a name, link(2) cannot); a crash in between leaves the temp name, which the start
  // removes for a journaled rollback.
  name_created(image, path);
  if (!p.replace.empty()) {
    require_entry(image.dir.get(), replace_name, replaced, p.replace);
    if (::renameat(image.dir.get(), image.name.c_str(), image.dir.get(), replace_name.c_str()) != 0)
      throw Error::system(errno, "rename", path);
    // Told once it is so: a rollback that failed before the rename must not read as one that
    // changed the disk.
    control.set_phase(JobPhase::Writing);
    if (progress) progress(control.done(), control.total());
    cleanup.disarm();
    sync_created_entry(image, p.replace);
  } else {
    sync_created_entry(image, path);
    cleanup.disarm();
  }
  return result;
}

}  // namespace

}  // namespace blocksnap
