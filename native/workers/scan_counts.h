// What every scan reports to JS (scanImage, Volume.scanBlocks): the digests and the counters,
// under the same names, so the TypeScript wrappers read both results alike.
#pragma once

#include <napi.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace blocksnap::js {

// A Buffer over the vector's memory, which it takes: no copy on the JS thread (a scan's digests
// are 32 bytes per block, 512 MiB for a 64 TiB image). Copied only where Node allows no
// external buffers.
inline Napi::Buffer<uint8_t> buffer_taking(Napi::Env env, std::vector<uint8_t>&& bytes) {
  if (bytes.empty()) return Napi::Buffer<uint8_t>::New(env, 0);
  auto* owned = new std::vector<uint8_t>(std::move(bytes));
  return Napi::Buffer<uint8_t>::NewOrCopy(env, owned->data(), owned->size(), [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, owned);
}

// Takes the digests out of `r`.
template <typename Result>
void set_scan_counts(Napi::Env env, Napi::Object o, Result& r) {
  o.Set("digests", buffer_taking(env, std::move(r.digests)));
  o.Set("bytesRead", static_cast<double>(r.bytes_read));
  o.Set("zeroBlocks", static_cast<double>(r.zero_blocks));
  o.Set("blocksWritten", static_cast<double>(r.blocks_written));
  o.Set("bytesWritten", static_cast<double>(r.bytes_written));
  o.Set("repairedDigests", Napi::Buffer<uint8_t>::Copy(env, r.repaired_digests.data(), r.repaired_digests.size()));
  o.Set("writtenDigests", Napi::Buffer<uint8_t>::Copy(env, r.written_digests.data(), r.written_digests.size()));
}

}  // namespace blocksnap::js
