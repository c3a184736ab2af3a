// libFuzzer target for the qcow2 reader: any input must open and read without a crash, a hang,
// an unbounded allocation or a sanitizer report; the only acceptable failure is blocksnap::Error.
//
// The input becomes the content of an in-memory file (memfd) that the reader opens by path, so
// the real open/pread code runs. Backing files are disabled: an input must not be able to make
// the fuzzer open arbitrary paths. Reads cover the first 8 MiB and the last MiB of the virtual
// size, enough to reach every table a small input can describe.
//
//   npm run fuzz:qcow2 -- -max_total_time=60 CORPUS_DIR
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/qcow2_reader.h"

namespace {

int memfd() {
  static int fd = [] {
    int f = ::memfd_create("qcow2-fuzz", MFD_CLOEXEC);
    if (f < 0) std::abort();
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd();
  if (::ftruncate(fd, 0) != 0) std::abort();
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  static std::vector<uint8_t> buf(1 << 20);
  try {
    blocksnap::Qcow2OpenOptions options;
    options.max_backing_depth = 0;
    auto source = blocksnap::open_qcow2_source(path, options);
    const uint64_t vsize = source->size();
    auto read = [&](uint64_t offset) {
      const size_t len = static_cast<size_t>(std::min<uint64_t>(buf.size(), vsize - offset));
      if (len > 0) source->read(offset, len, buf.data());
    };
    for (uint64_t off = 0; off < std::min<uint64_t>(vsize, 8 << 20); off += buf.size()) read(off);
    if (vsize > (8u << 20)) read(vsize - std::min<uint64_t>(vsize, buf.size()));
  } catch (const blocksnap::Error&) {
  }
  return 0;
}
