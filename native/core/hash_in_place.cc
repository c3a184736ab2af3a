#include "core/hash_in_place.h"

#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>

#include "core/zero_detect.h"

namespace blocksnap {

namespace {

// Set only while this thread reads a mapping; the handler jumps back through it.
thread_local sigjmp_buf* t_mapped_read = nullptr;
struct sigaction g_previous_sigbus;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  if (sigjmp_buf* jump = t_mapped_read) siglongjmp(*jump, 1);
  // Not a fault of ours: behave as if this handler had never been installed.
  if (g_previous_sigbus.sa_flags & SA_SIGINFO) {
    g_previous_sigbus.sa_sigaction(sig, info, context);
  } else if (g_previous_sigbus.sa_handler != SIG_IGN && g_previous_sigbus.sa_handler != SIG_DFL) {
    g_previous_sigbus.sa_handler(sig);
  } else {
    ::signal(SIGBUS, SIG_DFL);
    ::raise(SIGBUS);
  }
}

bool install_sigbus_handler() {
  static std::once_flag once;
  static bool installed = false;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    installed = ::sigaction(SIGBUS, &sa, &g_previous_sigbus) == 0;
  });
  return installed;
}

size_t page_size() {
  static const size_t size = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

}  // namespace

std::optional<InPlaceHash> hash_in_place(int fd, uint64_t offset, size_t len) {
  if (len == 0 || offset % page_size() != 0 || !install_sigbus_handler()) return std::nullopt;
  // MAP_POPULATE maps the cached pages in one go instead of one fault per 16 pages.
  void* map = ::mmap(nullptr, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, static_cast<off_t>(offset));
  if (map == MAP_FAILED) return std::nullopt;
  const auto* bytes = static_cast<const uint8_t*>(map);

  InPlaceHash result;
  // Allocated out here: a jump out of the hashing must not leak what it allocated.
  Sha256 hasher;
  bool faulted = false;
  sigjmp_buf jump;
  if (sigsetjmp(jump, 1) == 0) {
    t_mapped_read = &jump;
    try {
      result.zero = is_all_zero(bytes, len);
      if (!result.zero) {
        hasher.update(bytes, len);
        result.digest = hasher.finish();
      }
    } catch (...) {
      t_mapped_read = nullptr;
      ::munmap(map, len);
      throw;
    }
  } else {
    faulted = true;  // the file shrank under the mapping
  }
  t_mapped_read = nullptr;
  ::munmap(map, len);
  if (faulted) return std::nullopt;
  return result;
}

}  // namespace blocksnap
