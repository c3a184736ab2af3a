#include "volume/cow_layer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "io/durable_dirs.h"
#include "io/file_io.h"
#include "io/open_regular.h"
#include "volume/cow_format.h"

namespace blocksnap {

namespace {

UniqueFd open_data(const std::string& path, uint64_t size, bool writable) {
  // O_NONBLOCK: a FIFO under the layer's name must not hang the open (io/open_regular.h).
  UniqueFd fd(open_retry(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd) throw Error::image(errno, "open", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw Error::system(errno, "fstat", path);
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != size) {
    Error e(ErrorCode::ImageCorrupt, "layer data " + path + " is corrupt: " +
                                         (S_ISREG(st.st_mode) ? "size " + std::to_string(st.st_size) + ", expected " + std::to_string(size)
                                                              : std::string("not a regular file")));
    e.path = path;
    throw e;
  }
  clear_nonblock(fd.get());
  return fd;
}

// Where the next data / hole at or after `offset` is, clipped to `end`; a filesystem without
// SEEK_DATA reports all data.
uint64_t seek_clipped(int fd, uint64_t offset, uint64_t end, int whence, const std::string& path) {
  const off_t r = ::lseek(fd, static_cast<off_t>(offset), whence);
  if (r >= 0) return std::min<uint64_t>(static_cast<uint64_t>(r), end);
  if (errno == ENXIO) return end;
  if (errno == EINVAL || errno == EOPNOTSUPP) return whence == SEEK_DATA ? offset : end;
  throw Error::system(errno, whence == SEEK_DATA ? "lseek(SEEK_DATA)" : "lseek(SEEK_HOLE)", path);
}

// Where the run of bytes from `pos` whose content comes from `source` ends (at most `end`),
// tested granule by granule of the finest layer.
uint64_t same_source_end(LayerStack layers, int source, uint64_t pos, uint64_t end) {
  if (layers.empty()) return end;
  const uint64_t step = stack_step(layers);
  uint64_t run_end = std::min(end, (pos / step + 1) * step);
  while (run_end < end && layer_at(layers, run_end) == source) run_end = std::min(end, run_end + step);
  return run_end;
}

// Merged extents from the start of a range, up to a count: full() once the extent after the
// last wanted one has begun, which is when the last wanted one is known to be whole.
class ExtentList {
 public:
  explicit ExtentList(size_t max) : max_(std::max<size_t>(max, 1)) {}
  // Appends a run, merged with the last extent when the flags match; false once full.
  bool append(uint64_t length, uint32_t flags) {
    if (length == 0) return !full();
    if (!out_.empty() && out_.back().flags == flags) out_.back().length += length;
    else out_.push_back({length, flags});
    return !full();
  }
  bool full() const noexcept { return out_.size() > max_; }
  std::vector<VolumeExtent> take() {
    if (full()) out_.pop_back();
    return std::move(out_);
  }

 private:
  size_t max_;
  std::vector<VolumeExtent> out_;
};

}  // namespace

void create_cow_layer(const LayerFiles& files, uint64_t size, const std::string& layer_id, uint16_t map_version) {
  if (!is_valid_layer_id(layer_id))
    throw Error(ErrorCode::InvalidArgument, "layer id must be 1 to 32 characters of [A-Za-z0-9._-]");
  // The catalog commit that names the layer follows: the directories' own names must be durable.
  make_dirs_durably(parent_dir(files.data_path), 0700);
  if (parent_dir(files.map_path) != parent_dir(files.data_path)) make_dirs_durably(parent_dir(files.map_path), 0700);
  {
    UniqueFd fd(open_retry(files.data_path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) throw Error::image(errno, "open", files.data_path);
    try {
      if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) throw Error::system(errno, "ftruncate", files.data_path);
      fsync_file(fd.get(), files.data_path);
    } catch (...) {
      ::unlink(files.data_path.c_str());
      throw;
    }
  }
  try {
    CowMap::create(files.map_path, size, layer_id, map_version);
    fsync_dir(parent_dir(files.data_path));
    if (parent_dir(files.map_path) != parent_dir(files.data_path)) fsync_dir(parent_dir(files.map_path));
  } catch (...) {
    ::unlink(files.data_path.c_str());
    ::unlink(files.map_path.c_str());
    throw;
  }
}

CowLayer::CowLayer(const LayerFiles& f, uint64_t size, bool writable)
    : files(f), data(open_data(f.data_path, size, writable)), map(f.map_path, size, writable) {}

bool stack_known_zero(LayerStack layers, const BaseView& base, uint64_t offset, uint64_t len) {
  if (len == 0) return true;
  if (!base.all_zero(offset, len)) return false;
  return same_source_end(layers, -1, offset, offset + len) == offset + len && layer_at(layers, offset) < 0;
}

namespace {

// Calls f(source, pos, n) for each run of granules of [offset, offset + len) with the same
// source (a layer index, or -1 for the base): bytes [pos, pos + n). Stops early when f returns
// false.
template <typename F>
bool each_run(LayerStack layers, uint64_t offset, size_t len, F&& f) {
  const uint64_t end = offset + len;
  for (uint64_t pos = offset; pos < end;) {
    const int source = layer_at(layers, pos);
    const uint64_t run_end = same_source_end(layers, source, pos, end);
    if (!f(source, pos, static_cast<size_t>(run_end - pos))) return false;
    pos = run_end;
  }
  return true;
}

// One pass over [offset, offset + len): one pread per layer run, one base read per base run
// unless `base` is null (those bytes are left as they are).
uint64_t read_runs(LayerStack layers, const BaseView* base, uint64_t offset, size_t len, uint8_t* out) {
  uint64_t bytes_read = 0;
  each_run(layers, offset, len, [&](int source, uint64_t pos, size_t n) {
    uint8_t* dst = out + (pos - offset);
    if (source < 0) {
      if (base != nullptr) bytes_read += base->read(pos, n, dst);
    } else {
      const CowLayer& layer = *layers[static_cast<size_t>(source)];
      const size_t got = read_at(layer.data.get(), dst, n, pos, layer.files.data_path);
      if (got < n) std::memset(dst + got, 0, n - got);  // cannot happen: the size was checked at open
      bytes_read += got;
    }
    return true;
  });
  return bytes_read;
}

}  // namespace

uint64_t read_through(LayerStack layers, const BaseView& base, uint64_t offset, size_t len, uint8_t* out) {
  return read_runs(layers, &base, offset, len, out);
}

bool read_through_cached(LayerStack layers, const BaseView& base, uint64_t offset, size_t len, uint8_t* out) noexcept {
  return each_run(layers, offset, len, [&](int source, uint64_t pos, size_t n) {
    uint8_t* dst = out + (pos - offset);
    if (source < 0) return base.read_cached(pos, n, dst);
    return read_cached_at(layers[static_cast<size_t>(source)]->data.get(), dst, n, pos);
  });
}

uint64_t read_layers(LayerStack layers, uint64_t offset, size_t len, uint8_t* out) {
  return read_runs(layers, nullptr, offset, len, out);
}

std::vector<VolumeExtent> stack_extents(LayerStack layers, const BaseView& base, uint64_t offset, uint64_t len,
                                        size_t max_extents) {
  ExtentList out(max_extents);
  const uint64_t end = offset + len;
  for (uint64_t pos = offset; pos < end && !out.full();) {
    const int source = layer_at(layers, pos);
    const uint64_t run_end = same_source_end(layers, source, pos, end);
    if (source < 0) {
      for (uint64_t p = pos; p < run_end;) {
        const uint64_t i = p / base.block_size();
        const uint64_t e = std::min(run_end, (i + 1) * base.block_size());
        if (!out.append(e - p, base.zero_block(i) ? kExtentHoleZero : 0)) break;
        p = e;
      }
    } else {
      const CowLayer& layer = *layers[static_cast<size_t>(source)];
      for (uint64_t p = pos; p < run_end;) {
        const uint64_t data = seek_clipped(layer.data.get(), p, run_end, SEEK_DATA, layer.files.data_path);
        if (!out.append(data - p, kExtentHoleZero) || data >= run_end) break;
        uint64_t hole = seek_clipped(layer.data.get(), data, run_end, SEEK_HOLE, layer.files.data_path);
        if (hole <= data) hole = run_end;  // the file changed under us: call the rest data
        if (!out.append(hole - data, 0)) break;
        p = hole;
      }
    }
    pos = run_end;
  }
  return out.take();
}

}  // namespace blocksnap
