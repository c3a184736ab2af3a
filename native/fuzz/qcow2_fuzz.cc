// libFuzzer target for the qcow2 reader: any input must open and read without a crash, a hang,
// an unbounded allocation or a sanitizer report; the only acceptable failure is blocksnap::Error.
//
// The input becomes the content of a file on tmpfs that the reader opens by its path, so the real
// open/pread code runs. Not a memfd through /proc/self/fd: image files are opened O_NOFOLLOW, so
// that path, a symlink, fails every input before the reader sees it; the count of inputs that
// opened, printed at exit, is what shows a run reached the reader. Backing files are disabled: an
// input must not be able to make the fuzzer open arbitrary paths. Reads cover the first 8 MiB and
// the last MiB of the virtual size, enough to reach every table a small input can describe.
//
//   npm run fuzz:qcow2 -- -max_total_time=60 CORPUS_DIR
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/qcow2_reader.h"

namespace {

uint64_t g_inputs = 0;
uint64_t g_opened = 0;
std::string g_path;  // the input file, removed at exit

void at_exit() {
  std::fprintf(stderr, "qcow2_fuzz: %llu of %llu inputs opened as qcow2\n", static_cast<unsigned long long>(g_opened),
               static_cast<unsigned long long>(g_inputs));
  ::unlink(g_path.c_str());
}

// The descriptor of the input file, made (and its removal at exit arranged) on first use.
int input_fd() {
  static const int fd = [] {
    const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
    std::string tmpl = std::string(dir) + "/qcow2-fuzz-XXXXXX";
    const int f = ::mkstemp(tmpl.data());
    if (f < 0) std::abort();
    g_path = tmpl;
    std::atexit(at_exit);
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = input_fd();
  ++g_inputs;
  if (::ftruncate(fd, 0) != 0) std::abort();
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  const std::string& path = g_path;
  static std::vector<uint8_t> buf(1 << 20);
  try {
    blocksnap::Qcow2OpenOptions options;
    options.max_backing_depth = 0;
    auto source = blocksnap::open_qcow2_source(path, options);
    ++g_opened;
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
