#include "core/verify_blocks.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "core/aligned_buffer.h"
#include "core/block_format.h"
#include "core/block_reader.h"
#include "core/error.h"

namespace blocksnap {

const char* verify_reason_name(VerifyReason r) noexcept {
  switch (r) {
    case VerifyReason::Missing: return "missing";
    case VerifyReason::CorruptHeader: return "corrupt-header";
    case VerifyReason::DigestMismatch: return "digest-mismatch";
    case VerifyReason::IoError: return "io-error";
  }
  return "io-error";
}

static VerifyReason reason_of(const Error& e) {
  switch (e.code()) {
    case ErrorCode::BlockMissing: return VerifyReason::Missing;
    case ErrorCode::BlockCorrupt: return VerifyReason::CorruptHeader;
    case ErrorCode::DigestMismatch: return VerifyReason::DigestMismatch;
    default: return VerifyReason::IoError;
  }
}

VerifyResult verify_blocks(const VerifyParams& p, JobControl& control, const ProgressFn& progress) {
  if (p.digests.size() % kDigestSize != 0)
    throw Error(ErrorCode::InvalidArgument, "digests must be a multiple of 32 bytes");
  const uint64_t count = p.digests.size() / kDigestSize;
  control.set_total(count);

  VerifyResult result;
  std::mutex problems_mutex;
  std::atomic<uint64_t> checked{0};
  ParallelRun run(control, count);
  BlockReadOptions read_options;
  read_options.drop_cache = true;
  run.run(effective_threads(p.threads, count), [&](ParallelRun& job) {
    // Grows to the largest block met; starts at the default block size to avoid regrowth.
    AlignedBuffer buf(kDefaultBlockSize);
    uint64_t i;
    while (job.next(i)) {
      Digest digest;
      std::memcpy(digest.data(), p.digests.data() + i * kDigestSize, kDigestSize);
      try {
        read_block(p.store_dir, digest, buf, read_options);
      } catch (const Error& e) {
        std::lock_guard lock(problems_mutex);
        result.problems.push_back({i, digest, reason_of(e), e.what()});
      }
      checked.fetch_add(1, std::memory_order_relaxed);
      control.add_done(1);
    }
  }, progress);

  std::sort(result.problems.begin(), result.problems.end(),
            [](const VerifyProblem& a, const VerifyProblem& b) { return a.index < b.index; });
  result.checked = checked;
  return result;
}

}  // namespace blocksnap
