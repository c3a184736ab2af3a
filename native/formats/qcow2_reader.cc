#include "formats/qcow2_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "core/error.h"
#include "core/image_file.h"
#include "formats/backing_name.h"
#include "formats/format_probe.h"
#include "formats/qcow2_format.h"
#include "io/file_io.h"

namespace blocksnap {

using namespace qcow2;

namespace {

[[noreturn]] void corrupt(const std::string& path, const std::string& what) {
  Error e(ErrorCode::ImageCorrupt, path + ": malformed qcow2 image: " + what);
  e.path = path;
  throw e;
}

[[noreturn]] void unsupported(const std::string& path, const std::string& what) {
  Error e(ErrorCode::UnsupportedFormat, path + ": " + what);
  e.path = path;
  throw e;
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Names of incompatible features from the image's feature name table, for the error message.
std::string feature_names(std::span<const uint8_t> table, uint64_t bits) {
  std::string out;
  for (size_t i = 0; i + 48 <= table.size(); i += 48) {
    if (table[i] != 0 || table[i + 1] >= 64 || !(bits >> table[i + 1] & 1)) continue;
    const char* name = reinterpret_cast<const char*>(&table[i + 2]);
    out += (out.empty() ? "" : ", ") + std::string(name, strnlen(name, 46));
  }
  return out;
}

uint64_t div_round_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// The checks are QEMU's (qcow2_read_extensions): an image failing one is one QEMU refuses to
// open. The size is checked whatever the autoclear bit says, as QEMU does; the rest only when the
// bit is set, since QEMU ignores the data otherwise. The bitmap directory itself is not read:
// only how many bitmaps there are matters here.
void read_bitmaps_extension(Qcow2Header& q, std::span<const uint8_t> ext, uint64_t cluster, const std::string& path) {
  if (ext.size() != kBitmapsExtSize)
    corrupt(path, "the bitmaps extension is " + std::to_string(ext.size()) + " bytes long, not " + std::to_string(kBitmapsExtSize));
  if (!(q.autoclear & kAutoclearBitmaps)) return;
  if (get_be32(ext.data() + 4) != 0) corrupt(path, "the reserved field of the bitmaps extension is not zero");
  const uint32_t n = get_be32(ext.data());
  if (n == 0) corrupt(path, "the bitmaps extension counts no bitmap");
  const uint64_t directory = get_be64(ext.data() + 16);
  if (directory % cluster != 0) corrupt(path, "the bitmap directory offset " + hex(directory) + " is not cluster aligned");
  q.nb_bitmaps = n;
}

}  // namespace

bool Qcow2Header::extended_l2() const { return (incompatible & kIncompatExtendedL2) != 0; }

Qcow2Header parse_qcow2_header(std::span<const uint8_t> head, uint64_t file_size, const std::string& path) {
  if (head.size() < 4 || get_be32(head.data()) != kMagic) {
    Error e(ErrorCode::NotAnImage, path + " is not a qcow2 image (no QFI\\xfb magic)");
    e.path = path;
    throw e;
  }
  if (head.size() < kHeaderV2Size) corrupt(path, "the header is truncated (file of " + std::to_string(file_size) + " bytes)");
  const uint8_t* h = head.data();
  Qcow2Header q;
  q.version = get_be32(h + kOffVersion);
  if (q.version == 0) corrupt(path, "version 0");
  if (q.version == 1) unsupported(path, "the original qcow format (version 1) is not supported; convert it with qemu-img convert -O qcow2");
  if (q.version > 3) unsupported(path, "qcow2 version " + std::to_string(q.version) + " is not supported (only 2 and 3)");
  q.cluster_bits = get_be32(h + kOffClusterBits);
  if (q.cluster_bits < kMinClusterBits || q.cluster_bits > kMaxClusterBits)
    corrupt(path, "cluster bits " + std::to_string(q.cluster_bits) + " outside 9..21");
  const uint64_t cluster = q.cluster_size();
  // Whole 512-byte sectors, as QEMU reads it: a guest never sees the bytes of a partial last one.
  q.size = get_be64(h + kOffSize) & ~uint64_t{511};
  if (q.size > kMaxVirtualSize) corrupt(path, "virtual size " + std::to_string(q.size) + " is too large");
  q.crypt_method = get_be32(h + kOffCryptMethod);
  q.l1_size = get_be32(h + kOffL1Size);
  q.l1_offset = get_be64(h + kOffL1Offset);
  q.nb_snapshots = get_be32(h + kOffNbSnapshots);

  if (q.version == 2) {
    q.header_length = kHeaderV2Size;
  } else {
    if (head.size() < kHeaderV3MinSize) corrupt(path, "the version 3 header is truncated");
    q.incompatible = get_be64(h + kOffIncompatible);
    q.compatible = get_be64(h + kOffCompatible);
    q.autoclear = get_be64(h + kOffAutoclear);
    q.refcount_order = get_be32(h + kOffRefcountOrder);
    q.header_length = get_be32(h + kOffHeaderLength);
    if (q.header_length < kHeaderV3MinSize) corrupt(path, "header length " + std::to_string(q.header_length) + " is below 104");
    if (q.header_length > cluster) corrupt(path, "header length " + std::to_string(q.header_length) + " exceeds the cluster size");
    if (q.header_length > head.size()) corrupt(path, "the header is truncated (header length " + std::to_string(q.header_length) + ")");
    if (q.header_length > kOffCompressionType) q.compression_type = h[kOffCompressionType];
    if (q.refcount_order > 6) corrupt(path, "refcount order " + std::to_string(q.refcount_order) + " is above 6");
  }

  // Header extensions lie between the header and the backing file name (or the cluster's end).
  const uint64_t backing_offset = get_be64(h + kOffBackingOffset);
  const uint32_t backing_size = get_be32(h + kOffBackingSize);
  const uint64_t area_end = std::min<uint64_t>(head.size(), backing_offset != 0 ? std::min(backing_offset, cluster) : cluster);
  std::span<const uint8_t> names;
  for (uint64_t off = q.header_length; off + 8 <= area_end;) {
    const uint32_t type = get_be32(h + off), len = get_be32(h + off + 4);
    if (type == kExtEnd) break;
    if (len > area_end - off - 8) corrupt(path, "header extension " + hex(type) + " runs past the header cluster");
    const uint8_t* data = h + off + 8;
    if (type == kExtBackingFormat) {
      if (len > 15) corrupt(path, "the backing format name is too long");
      q.backing_format.assign(reinterpret_cast<const char*>(data), strnlen(reinterpret_cast<const char*>(data), len));
    } else if (type == kExtFeatureNames) {
      names = std::span<const uint8_t>(data, len);
    } else if (type == kExtBitmaps) {
      read_bitmaps_extension(q, std::span<const uint8_t>(data, len), cluster, path);
    }
    off += 8 + ((uint64_t{len} + 7) & ~uint64_t{7});
  }

  const uint64_t unknown = q.incompatible & ~kIncompatKnown;
  if (unknown != 0) {
    const std::string n = feature_names(names, unknown);
    unsupported(path, "the image uses incompatible qcow2 features this reader does not know (bits " + hex(unknown) +
                          (n.empty() ? "" : ": " + n) + ")");
  }
  if (q.incompatible & kIncompatCorrupt)
    // A repair can fail; the way out then is a snapshot written to a new file, which needs
    // nothing of this one.
    corrupt(path,
            "QEMU marked it corrupt (the corrupt bit is set); repair it with qemu-img check -r all first, once no VM or other "
            "QEMU process has it open. If that cannot repair it, write a snapshot to a new image (blocksnap clone SNAPSHOT NEW "
            "--format qcow2) and, with the VM stopped, move it into place (mv NEW " + path + ")");
  if (q.incompatible & kIncompatDataFile)
    unsupported(path, "images with an external data file are not supported");
  if (q.crypt_method != 0) {
    // The header's crypt_method: 1 is QEMU's legacy AES-CBC, 2 LUKS (docs/interop/qcow2.txt).
    const std::string method = q.crypt_method == 1   ? "AES, encrypt.format=aes"
                               : q.crypt_method == 2 ? "LUKS, encrypt.format=luks"
                                                     : "method " + std::to_string(q.crypt_method);
    unsupported(path, "encrypted qcow2 images are not supported (" + method + ")");
  }
  if (q.incompatible & kIncompatCompressionType) {
    if (q.header_length <= kOffCompressionType) corrupt(path, "the compression type bit is set but the header has no compression type");
    if (q.compression_type != kCompressionZlib && q.compression_type != kCompressionZstd)
      unsupported(path, "unknown compression type " + std::to_string(q.compression_type));
  } else if (q.compression_type != kCompressionZlib) {
    corrupt(path, "a compression type is set without the compression type feature bit");
  }
  if (q.extended_l2() && q.cluster_bits < kMinExtendedL2ClusterBits)
    corrupt(path, "extended L2 entries need clusters of at least 16 KiB");

  // L1 table: it must cover the virtual size and lie inside the file.
  const uint64_t entry_bytes = q.extended_l2() ? 16 : 8;
  const uint64_t l2_entries = cluster / entry_bytes;
  const uint64_t l1_needed = div_round_up(q.size, cluster * l2_entries);
  if (q.l1_size < l1_needed) corrupt(path, "the L1 table (" + std::to_string(q.l1_size) + " entries) does not cover the virtual size");
  if (uint64_t{q.l1_size} * 8 > kMaxL1Bytes) corrupt(path, "the L1 table is larger than 32 MiB");
  if (q.l1_size > 0) {
    if (q.l1_offset % cluster != 0) corrupt(path, "the L1 table offset " + hex(q.l1_offset) + " is not cluster aligned");
    if (q.l1_offset > file_size || uint64_t{q.l1_size} * 8 > file_size - q.l1_offset)
      corrupt(path, "the L1 table lies outside the file");
  }

  if (backing_offset != 0 && backing_size != 0) {
    if (backing_size > kMaxBackingNameSize) corrupt(path, "the backing file name is longer than 1023 bytes");
    if (backing_offset > area_end || backing_size > head.size() - backing_offset || backing_offset + backing_size > cluster)
      corrupt(path, "the backing file name lies outside the header cluster");
    q.backing_file.assign(reinterpret_cast<const char*>(h + backing_offset), backing_size);
    if (q.backing_file.find('\0') != std::string::npos) corrupt(path, "the backing file name contains a NUL byte");
  }
  return q;
}

namespace {

Qcow2Header read_header(const ImageFile& f, const std::string& path) {
  std::vector<uint8_t> head(static_cast<size_t>(std::min<uint64_t>(f.size, 512)));
  head.resize(read_at(f.fd.get(), head.data(), head.size(), 0, path));
  // The whole first cluster holds extensions and the backing name; its size is in the header.
  if (head.size() >= kOffClusterBits + 4 && get_be32(head.data()) == kMagic) {
    const uint32_t bits = get_be32(head.data() + kOffClusterBits);
    if (bits >= kMinClusterBits && bits <= kMaxClusterBits) {
      head.resize(static_cast<size_t>(std::min<uint64_t>(f.size, uint64_t{1} << bits)));
      head.resize(read_at(f.fd.get(), head.data(), head.size(), 0, path));
    }
  }
  return parse_qcow2_header(head, f.size, path);
}

}  // namespace

Qcow2Header read_qcow2_header(const std::string& path) { return read_header(open_image_for_read(path), path); }

namespace {

// The format QEMU probes the backing file `f` as, which it opens as `name`; `path` is the file read.
ImageFormat probe_file(const ImageFile& f, const std::string& image, const std::string& name, const std::string& path) {
  uint8_t head[kProbeBytes];
  const size_t n = read_at(f.fd.get(), head, sizeof head, 0, path);
  return probe_backing_format(std::span<const uint8_t>(head, n), image, name);
}

// The backing format `h` records; none when it records none (QEMU then probes the file).
std::optional<ImageFormat> declared_backing_format(const std::string& image, const Qcow2Header& h) {
  if (h.backing_format == "qcow2") return ImageFormat::Qcow2;
  if (h.backing_format == "raw" || h.backing_format == "file") return ImageFormat::Raw;
  if (!h.backing_format.empty()) unsupported(image, "backing format \"" + h.backing_format + "\" is not supported (raw and qcow2 are)");
  return std::nullopt;
}

// Only where no checked chain was given (tools, tests): the engine never has a backing file
// opened before it checked its path (read_qcow2_link).
ImageFormat backing_format_of(const std::string& image, const Qcow2Header& h, const std::string& backing) {
  // Opening it would only say ENOENT of a path the user never typed: name the image that refers to it.
  struct stat st;
  if (::stat(backing.c_str(), &st) != 0 && errno == ENOENT) {
    Error e(ErrorCode::ImageNotFound, "the backing file \"" + h.backing_file + "\" of " + image + " does not exist (" + backing + ")");
    e.path = backing;
    throw e;
  }
  if (const auto declared = declared_backing_format(image, h)) return *declared;
  // No format recorded: probe, as QEMU does.
  ImageFile f = open_image_for_read(backing);
  return probe_file(f, image, backing, backing);
}

struct FileId {
  dev_t dev;
  ino_t ino;
  auto operator<=>(const FileId&) const = default;
};

FileId file_id(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error::system(errno, "fstat", path);
  return {st.st_dev, st.st_ino};
}

[[noreturn]] void backing_changed(const std::string& image, const std::string& what) {
  Error e(ErrorCode::NotAnImage, "the backing file of " + image + " changed after it was checked (" + what + "); refusing it");
  e.path = image;
  throw e;
}

// The checked backing file `c`, named by `h` (the header of `image`, read now): opened by its
// real path without following a symlink, and only if the header still names it the way it did
// when it was checked (see Qcow2OpenOptions::checked_backing).
ImageFile open_checked_backing(const std::string& image, const Qcow2Header& h, const CheckedBacking& c) {
  const std::string named = resolve_backing_path(image, h.backing_file);
  if (named != c.path) backing_changed(image, "its header names \"" + h.backing_file + "\", which is " + named + ", not " + c.path);
  ImageFile f = open_image_checked(c.real, c.id);
  // The name QEMU opens may lead elsewhere by now (a symlink on it repointed): the file opened is
  // still the checked one, but no longer the VM's. Only compared, never read through the name.
  struct stat named_st;
  const FileId opened = file_id(f.fd.get(), c.real);
  if (::stat(c.path.c_str(), &named_st) != 0 || FileId{named_st.st_dev, named_st.st_ino} != opened)
    backing_changed(image, c.path + " no longer leads to " + c.real);
  ImageFormat format;
  if (const auto declared = declared_backing_format(image, h)) {
    format = *declared;
  } else {
    format = probe_file(f, image, c.path, c.real);
  }
  if (format != c.format) backing_changed(image, c.path + " is now read as " + (format == ImageFormat::Qcow2 ? "qcow2" : "raw"));
  return f;
}

// Per-thread scratch for compressed clusters: the payload and the inflated cluster, which stays
// cached for the next piece of the same cluster.
struct Scratch {
  std::vector<uint8_t> compressed;
  std::vector<uint8_t> cluster;
  uint64_t cluster_desc = 0;   // the compressed descriptor `cluster` holds
  uint64_t cluster_owner = 0;  // the id of the source it came from; 0 = none
};
thread_local Scratch scratch;
// Source ids for that cache: an address could be reused by a later source, an id never is.
std::atomic<uint64_t> next_source_id{1};

class Qcow2Source final : public BlockSource {
 public:
  // `file` is `path` already opened: the top image by open_image_checked (it is the disk the engine
  // checked against the image roots), a backing file by open_checked_backing, or by name where no
  // checked chain was given (tools, tests). `level` is 0 for the top image.
  Qcow2Source(const std::string& path, ImageFile file, const Qcow2OpenOptions& options, unsigned level, std::set<FileId>& seen)
      : path_(path), file_(std::move(file)) {
    if (!seen.insert(file_id(file_.fd.get(), path_)).second) corrupt(path_, "the backing chain refers back to an image already in it");
    h_ = read_header(file_, path_);
    cluster_ = h_.cluster_size();
    entry_bytes_ = h_.extended_l2() ? 16 : 8;
    l2_entries_ = cluster_ / entry_bytes_;

    if (h_.l1_size > 0) {
      std::vector<uint8_t> raw(size_t{h_.l1_size} * 8);
      if (read_at(file_.fd.get(), raw.data(), raw.size(), h_.l1_offset, path_) != raw.size())
        corrupt(path_, "the L1 table lies outside the file");
      l1_.resize(h_.l1_size);
      for (size_t i = 0; i < l1_.size(); ++i) l1_[i] = get_be64(raw.data() + i * 8) & kOffsetMask;
    }

    const std::vector<CheckedBacking>* checked = options.checked_backing;
    if (h_.backing_file.empty()) {
      if (checked && checked->size() > level) backing_changed(path_, "its header names no backing file now, but " + (*checked)[level].path + " was checked");
      return;
    }
    if (level >= options.max_backing_depth)
      unsupported(path_, "the backing chain is deeper than " + std::to_string(kMaxBackingDepth) + " images (or backing files are not allowed here)");
    if (checked) {
      if (checked->size() <= level) backing_changed(path_, "its header names \"" + h_.backing_file + "\" now, and no backing file was checked");
      const CheckedBacking& c = (*checked)[level];
      ImageFile f = open_checked_backing(path_, h_, c);
      if (c.format == ImageFormat::Qcow2) {
        backing_ = std::make_unique<Qcow2Source>(c.path, std::move(f), options, level + 1, seen);
      } else {
        if (checked->size() > level + 1) backing_changed(path_, c.path + " is a raw image, which names no backing file");
        backing_ = open_raw_source(std::move(f), c.path);
      }
      return;
    }
    const std::string bpath = resolve_backing_path(path_, h_.backing_file);
    if (backing_format_of(path_, h_, bpath) == ImageFormat::Qcow2)
      backing_ = std::make_unique<Qcow2Source>(bpath, open_image_for_read(bpath), options, level + 1, seen);
    else
      backing_ = open_raw_source(bpath);
  }

  uint64_t size() const override { return h_.size; }

  SourceRead read(uint64_t offset, size_t len, uint8_t* buf) const override {
    if (offset > h_.size || len > h_.size - offset) throw Error(ErrorCode::InvalidArgument, "read beyond the virtual size");
    Request rq{*this, offset, buf};
    uint64_t pos = offset;
    const uint64_t end = offset + len;
    while (pos < end) {
      const uint64_t c = pos / cluster_;
      const uint64_t l1i = c / l2_entries_;
      const uint64_t first = c % l2_entries_;
      // Entries this request needs from this L2 table.
      const uint64_t last_cluster = (end - 1) / cluster_;
      const uint64_t count = std::min(l2_entries_ - first, last_cluster - c + 1);
      const uint64_t span_end = std::min(end, (c + count) * cluster_);
      const uint64_t l2_offset = l1i < l1_.size() ? l1_[l1i] : 0;
      if (l2_offset == 0) {
        rq.unallocated(pos, span_end - pos);
        pos = span_end;
        continue;
      }
      if (l2_offset % cluster_ != 0) corrupt(path_, "L2 table offset " + hex(l2_offset) + " is not cluster aligned");
      const uint64_t file_size = file_size_reaching(l2_offset + cluster_);
      if (l2_offset >= file_size || cluster_ > file_size - l2_offset)
        corrupt(path_, "L2 table at " + hex(l2_offset) + " lies outside the file");
      // Local, not per-thread scratch: a backing read inside this loop reads its own L2 entries.
      std::vector<uint8_t> l2(count * entry_bytes_);
      if (read_at(file_.fd.get(), l2.data(), l2.size(), l2_offset + first * entry_bytes_, path_) != l2.size())
        corrupt(path_, "L2 table at " + hex(l2_offset) + " lies outside the file");
      rq.result.bytes_read += l2.size();
      for (uint64_t k = 0; k < count; ++k) {
        const uint64_t cs = (c + k) * cluster_;
        const uint64_t b = std::max(pos, cs), f = std::min(span_end, cs + cluster_);
        const uint64_t entry = get_be64(l2.data() + k * entry_bytes_);
        if (entry & kFlagCompressed) {
          rq.compressed(b, f - b, entry, cs);
        } else if (!h_.extended_l2()) {
          standard(rq, entry, b, f, cs);
        } else {
          extended(rq, entry, get_be64(l2.data() + k * entry_bytes_ + 8), b, f, cs);
        }
      }
      pos = span_end;
    }
    return rq.finish();
  }

  // Data, compressed and allocated clusters count in full, zero clusters not at all, and an
  // unallocated range counts what the backing chain holds there: the bytes a read of the range
  // reads, the chain as the reader sees it. The L2 entries are read afresh, as a read does.
  uint64_t data_bytes(uint64_t offset, uint64_t len) const override {
    if (offset >= h_.size) return 0;
    const uint64_t end = offset + std::min(len, h_.size - offset);
    uint64_t total = 0;
    // Neighbouring unallocated ranges go to the backing chain as one: per cluster, a large image's
    // chain would be asked millions of times.
    uint64_t back_begin = 0, back_end = 0;
    const auto unallocated = [&](uint64_t b, uint64_t f) {
      if (back_end != b) {
        total += backing_data_bytes(back_begin, back_end);
        back_begin = b;
      }
      back_end = f;
    };
    for (uint64_t pos = offset; pos < end;) {
      const uint64_t c = pos / cluster_;
      const uint64_t l1i = c / l2_entries_;
      const uint64_t first = c % l2_entries_;
      const uint64_t count = std::min(l2_entries_ - first, (end - 1) / cluster_ - c + 1);
      const uint64_t span_end = std::min(end, (c + count) * cluster_);
      const uint64_t l2_offset = l1i < l1_.size() ? l1_[l1i] : 0;
      if (l2_offset == 0) {
        unallocated(pos, span_end);
        pos = span_end;
        continue;
      }
      if (l2_offset % cluster_ != 0) corrupt(path_, "L2 table offset " + hex(l2_offset) + " is not cluster aligned");
      std::vector<uint8_t> l2(count * entry_bytes_);
      if (read_at(file_.fd.get(), l2.data(), l2.size(), l2_offset + first * entry_bytes_, path_) != l2.size())
        corrupt(path_, "L2 table at " + hex(l2_offset) + " lies outside the file");
      for (uint64_t k = 0; k < count; ++k) {
        const uint64_t cs = (c + k) * cluster_;
        const uint64_t b = std::max(pos, cs), f = std::min(span_end, cs + cluster_);
        const uint64_t entry = get_be64(l2.data() + k * entry_bytes_);
        if (entry & kFlagCompressed) {
          total += f - b;
        } else if (!h_.extended_l2()) {
          if (entry & kFlagZero) continue;
          if ((entry & kOffsetMask) == 0) unallocated(b, f);
          else total += f - b;
        } else {
          const uint64_t bitmap = get_be64(l2.data() + k * entry_bytes_ + 8);
          const uint64_t sub = cluster_ / kSubclustersPerCluster;
          for (uint64_t p = b; p < f;) {
            const unsigned i = static_cast<unsigned>((p - cs) / sub);
            const uint64_t q = std::min(f, cs + (i + 1) * sub);
            const bool zero = bitmap >> (32 + i) & 1, allocated = bitmap >> i & 1;
            if (allocated && !zero) total += q - p;
            else if (!zero) unallocated(p, q);
            p = q;
          }
        }
      }
      pos = span_end;
    }
    return total + backing_data_bytes(back_begin, back_end);
  }

 private:
  // The backing chain's data in guest [b, f); past its end the range reads as zeros.
  uint64_t backing_data_bytes(uint64_t b, uint64_t f) const {
    if (!backing_ || b >= f || b >= backing_->size()) return 0;
    return backing_->data_bytes(b, std::min(f, backing_->size()) - b);
  }

  // Collects one read request's pieces, merging neighbours so that contiguous host data and
  // contiguous backing ranges are each read with one call, and zero ranges are only filled in
  // when something else in the request is not zero.
  struct Request {
    Request(const Qcow2Source& s, uint64_t b, uint8_t* out) : src(s), base(b), buf(out) {}
    const Qcow2Source& src;
    uint64_t base;
    uint8_t* buf;
    SourceRead result{};
    bool all_zero = true;
    std::vector<std::pair<uint64_t, uint64_t>> zeros;  // guest [begin, end)
    uint64_t data_guest = 0, data_host = 0, data_len = 0;
    uint64_t back_guest = 0, back_len = 0;

    void zero(uint64_t g, uint64_t n) {
      if (!zeros.empty() && zeros.back().second == g) zeros.back().second += n;
      else zeros.emplace_back(g, g + n);
    }
    void data(uint64_t g, uint64_t host, uint64_t n) {
      all_zero = false;
      if (data_len != 0 && data_guest + data_len == g && data_host + data_len == host) {
        data_len += n;
        return;
      }
      flush_data();
      data_guest = g, data_host = host, data_len = n;
    }
    void unallocated(uint64_t g, uint64_t n) {
      const uint64_t bsize = src.backing_ ? src.backing_->size() : 0;
      const uint64_t from_backing = g < bsize ? std::min(n, bsize - g) : 0;
      if (from_backing != 0) {
        if (back_len != 0 && back_guest + back_len == g) {
          back_len += from_backing;
        } else {
          flush_backing();
          back_guest = g, back_len = from_backing;
        }
      }
      // Past the backing file's end an unallocated range reads as zeros.
      if (from_backing < n) zero(g + from_backing, n - from_backing);
    }
    void compressed(uint64_t g, uint64_t n, uint64_t entry, uint64_t cluster_start) {
      all_zero = false;
      const uint8_t* cl = src.decompress(entry, result);
      std::memcpy(buf + (g - base), cl + (g - cluster_start), n);
    }
    void flush_data() {
      if (data_len == 0) return;
      if (data_host >= src.file_size_reaching(data_host + 1))
        corrupt(src.path_, "data cluster at " + hex(data_host) + " lies beyond the end of the file");
      const size_t got = read_at(src.file_.fd.get(), buf + (data_guest - base), data_len, data_host, src.path_);
      // A last cluster cut short by the end of the file reads as zeros past it, as in QEMU.
      if (got < data_len) std::memset(buf + (data_guest - base) + got, 0, data_len - got);
      result.bytes_read += got;
      data_len = 0;
    }
    void flush_backing() {
      if (back_len == 0) return;
      const SourceRead r = src.backing_->read(back_guest, back_len, buf + (back_guest - base));
      result.bytes_read += r.bytes_read;
      if (r.zero) zero(back_guest, back_len);
      else all_zero = false;
      back_len = 0;
    }
    SourceRead finish() {
      flush_data();
      flush_backing();
      result.zero = all_zero;
      if (!all_zero)
        for (auto [b, e] : zeros) std::memset(buf + (b - base), 0, e - b);
      return result;
    }
  };

  // The file's size, looked up again (fstat) only when `end` lies past the largest size seen so
  // far. The image may be written while it is read: a running QEMU appends the clusters it
  // allocates, and the L2 entries, read afresh for every request, name them. Against the size
  // seen at open they would look like offsets past the end of the file, and a live VM's image
  // like a corrupt one. The size seen is shared by the scan threads and only ever raised.
  uint64_t file_size_reaching(uint64_t end) const {
    uint64_t seen = size_seen_.load(std::memory_order_relaxed);
    if (end <= seen) return seen;
    struct stat st;
    if (::fstat(file_.fd.get(), &st) != 0) throw Error::system(errno, "fstat", path_);
    const uint64_t now = static_cast<uint64_t>(st.st_size);
    while (seen < now && !size_seen_.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
    return now;
  }

  void check_data_offset(uint64_t host) const {
    if (host % cluster_ != 0) corrupt(path_, "data cluster offset " + hex(host) + " is not cluster aligned");
  }

  void standard(Request& rq, uint64_t entry, uint64_t b, uint64_t f, uint64_t cs) const {
    const uint64_t host = entry & kOffsetMask;
    if (entry & kFlagZero) {
      if (h_.version < 3) corrupt(path_, "a zero cluster flag in a version 2 image");
      rq.zero(b, f - b);
    } else if (host == 0) {
      rq.unallocated(b, f - b);
    } else {
      check_data_offset(host);
      rq.data(b, host + (b - cs), f - b);
    }
  }

  // Extended L2: 32 subclusters, each allocated (bit i), zero (bit 32 + i) or neither.
  void extended(Request& rq, uint64_t entry, uint64_t bitmap, uint64_t b, uint64_t f, uint64_t cs) const {
    const uint64_t host = entry & kOffsetMask;
    const uint64_t sub = cluster_ / kSubclustersPerCluster;
    if ((bitmap & (bitmap >> 32) & 0xffffffffu) != 0) corrupt(path_, "a subcluster is marked both allocated and zero");
    if (host != 0) check_data_offset(host);
    for (uint64_t p = b; p < f;) {
      const unsigned i = static_cast<unsigned>((p - cs) / sub);
      const uint64_t q = std::min(f, cs + (i + 1) * sub);
      if (bitmap >> (32 + i) & 1) {
        rq.zero(p, q - p);
      } else if (bitmap >> i & 1) {
        if (host == 0) corrupt(path_, "an allocated subcluster in a cluster without an offset");
        rq.data(p, host + (p - cs), q - p);
      } else {
        rq.unallocated(p, q - p);
      }
      p = q;
    }
  }

  // Inflates one compressed cluster into the thread's scratch buffer (kept for the next piece of
  // the same cluster).
  const uint8_t* decompress(uint64_t entry, SourceRead& r) const {
    Scratch& s = scratch;
    if (s.cluster_owner == id_ && s.cluster_desc == entry) return s.cluster.data();
    if (h_.compression_type == kCompressionZstd)
      unsupported(path_, "the image has zstd-compressed clusters and this build has no zstd; convert it with qemu-img convert -O qcow2 -o compression_type=zlib");
    const unsigned csize_shift = 62 - (h_.cluster_bits - 8);
    const uint64_t csize_mask = (uint64_t{1} << (h_.cluster_bits - 8)) - 1;
    const uint64_t coffset = entry & ((uint64_t{1} << csize_shift) - 1);
    const uint64_t sectors = ((entry >> csize_shift) & csize_mask) + 1;
    const uint64_t csize = sectors * 512 - (coffset & 511);
    const uint64_t file_size = file_size_reaching(coffset + csize);
    if (coffset >= file_size) corrupt(path_, "compressed cluster at " + hex(coffset) + " lies beyond the end of the file");
    // The sector count rounds up, so the last compressed cluster may end past the file.
    const uint64_t avail = std::min(csize, file_size - coffset);
    s.compressed.resize(avail);
    const size_t got = read_at(file_.fd.get(), s.compressed.data(), avail, coffset, path_);
    r.bytes_read += got;
    s.cluster.resize(cluster_);
    s.cluster_owner = 0;

    z_stream z{};
    if (inflateInit2(&z, -12) != Z_OK) throw Error(ErrorCode::IOError, "inflateInit2 failed");
    z.next_in = s.compressed.data();
    z.avail_in = static_cast<uInt>(got);
    z.next_out = s.cluster.data();
    z.avail_out = static_cast<uInt>(cluster_);
    const int ret = inflate(&z, Z_FINISH);
    const bool full = z.avail_out == 0;
    inflateEnd(&z);
    if (!((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && full))
      corrupt(path_, "compressed cluster at " + hex(coffset) + " does not inflate to a full cluster");
    s.cluster_owner = id_;
    s.cluster_desc = entry;
    return s.cluster.data();
  }

  const uint64_t id_ = next_source_id.fetch_add(1, std::memory_order_relaxed);
  std::string path_;
  ImageFile file_;
  mutable std::atomic<uint64_t> size_seen_{file_.size};  // see file_size_reaching
  Qcow2Header h_;
  uint64_t cluster_ = 0, entry_bytes_ = 8, l2_entries_ = 0;
  std::vector<uint64_t> l1_;  // L2 table offsets (flags stripped); 0 = unallocated
  std::unique_ptr<BlockSource> backing_;
};

}  // namespace

std::unique_ptr<BlockSource> open_qcow2_source(const std::string& path, const Qcow2OpenOptions& options) {
  std::set<FileId> seen;
  return std::make_unique<Qcow2Source>(path, open_image_checked(path, options.image_id), options, 0, seen);
}

std::unique_ptr<BlockSource> open_backing_chain(const std::string& image_path, const std::string& backing_name,
                                                const std::string& backing_format, const std::vector<CheckedBacking>& checked) {
  if (checked.empty()) throw Error(ErrorCode::InvalidArgument, "a backing chain needs its checked backing files");
  // The header the image will have, as far as open_checked_backing looks at one.
  Qcow2Header h;
  h.backing_file = backing_name;
  h.backing_format = backing_format;
  const CheckedBacking& c = checked.front();
  ImageFile f = open_checked_backing(image_path, h, c);
  if (c.format == ImageFormat::Raw) {
    if (checked.size() > 1) backing_changed(image_path, c.path + " is a raw image, which names no backing file");
    return open_raw_source(std::move(f), c.path);
  }
  Qcow2OpenOptions options;
  options.checked_backing = &checked;
  std::set<FileId> seen;
  return std::make_unique<Qcow2Source>(c.path, std::move(f), options, 1, seen);
}

Qcow2Link read_qcow2_link(const std::string& path, const std::string& named_as, const std::optional<FileIdentity>& expected) {
  const ImageFile f = open_image_checked(path, expected);
  Qcow2Link link;
  link.header = read_header(f, path);
  const FileId id = file_id(f.fd.get(), path);
  link.dev = id.dev;
  link.ino = id.ino;
  if (link.header.backing_file.empty()) return link;
  link.backing_format = declared_backing_format(path, link.header);
  link.backing_path = resolve_backing_path(named_as, link.header.backing_file);
  return link;
}

}  // namespace blocksnap
