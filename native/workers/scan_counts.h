// What every scan reports to JS (scanImage, Volume.scanBlocks): the digests and the counters,
// under the same names, so the TypeScript wrappers read both results alike.
#pragma once

#include <napi.h>

namespace blocksnap::js {

template <typename Result>
void set_scan_counts(Napi::Env env, Napi::Object o, const Result& r) {
  o.Set("digests", Napi::Buffer<uint8_t>::Copy(env, r.digests.data(), r.digests.size()));
  o.Set("bytesRead", static_cast<double>(r.bytes_read));
  o.Set("zeroBlocks", static_cast<double>(r.zero_blocks));
  o.Set("blocksWritten", static_cast<double>(r.blocks_written));
  o.Set("bytesWritten", static_cast<double>(r.bytes_written));
  o.Set("repairedDigests", Napi::Buffer<uint8_t>::Copy(env, r.repaired_digests.data(), r.repaired_digests.size()));
  o.Set("writtenDigests", Napi::Buffer<uint8_t>::Copy(env, r.written_digests.data(), r.written_digests.size()));
}

}  // namespace blocksnap::js
