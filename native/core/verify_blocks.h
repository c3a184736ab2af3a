// Store side of `store verify`: re-reads stored blocks and proves each one is what its name says.
// Problems are results, not errors: one bad block must not hide the state of the others.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/held_bytes.h"
#include "core/digest.h"
#include "core/parallel.h"

namespace blocksnap {

enum class VerifyReason { Missing, CorruptHeader, DigestMismatch, IoError };

const char* verify_reason_name(VerifyReason r) noexcept;  // the wire strings: 'missing', ...

struct VerifyParams {
  std::string store_dir;
  HeldBytes digests;  // n × 32, distinct
  unsigned threads = 0;
};

struct VerifyProblem {
  uint64_t index;  // position in VerifyParams::digests
  Digest digest;
  VerifyReason reason;
  std::string message;
};

struct VerifyResult {
  uint64_t checked = 0;
  std::vector<VerifyProblem> problems;  // in digest order
};

// Progress is in blocks. Throws only for Cancelled and invalid arguments.
VerifyResult verify_blocks(const VerifyParams& params, JobControl& control, const ProgressFn& progress);

}  // namespace blocksnap
