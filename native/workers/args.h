// Reading the options object of a native call. The TypeScript wrapper validates first and gives
// the friendly messages; this layer exists so that calling the raw binding with garbage throws
// (TypeError for a wrong type, RangeError with code InvalidArgument for a bad value) instead of
// crashing the process.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/block_format.h"
#include "core/digest.h"
#include "core/held_bytes.h"
#include "core/image_file.h"
#include "formats/qcow2_reader.h"
#include "io/unique_fd.h"

namespace blocksnap::js {

class Options {
 public:
  // info[0] must be an object.
  explicit Options(const Napi::CallbackInfo& info);

  // Each element of the array `name` (TypeError unless it is an array of plain objects), read
  // with the same checks; empty when absent.
  std::vector<Options> objects(const char* name) const;

  std::string string(const char* name) const;
  // True when the property is present (not undefined).
  bool has(const char* name) const;
  // A non-negative integer no larger than 2^53 - 1.
  uint64_t integer(const char* name) const;
  bool boolean(const char* name, bool fallback) const;
  // 0 when absent (= one thread per core); otherwise 1..1024.
  unsigned threads() const;
  // A copy of a Buffer / Uint8Array: JS may change the original while the job runs.
  // Absent (undefined) gives an empty vector when `required` is false.
  std::vector<uint8_t> bytes(const char* name, bool required) const;
  // A Buffer / Uint8Array lent, not copied: the result holds a reference to it, so the memory
  // stays put, and the caller must not change it until the job settles (the engine's digest
  // lists, which it never changes). For inputs as large as a view (32 bytes per block), whose
  // copy on the JS thread would hold the event loop. Must be destroyed on the JS thread (a job's
  // parameters are: the worker is deleted there). Absent gives empty bytes when not `required`.
  HeldBytes held_bytes(const char* name, bool required) const;
  // Empty when absent.
  Napi::Function function(const char* name) const;
  // A directory descriptor lent by JS (openImageDir's fd), duplicated here so that the job owns
  // its copy whatever JS does with the original meanwhile. Null when absent.
  std::shared_ptr<const UniqueFd> directory(const char* name) const;
  // `ownerUid` and `ownerGid`, both or neither: who a created file is given to. Absent: nullopt.
  std::optional<FileOwner> owner() const;
  // `{ dev, ino }` (bigints): the file a job must open (FileIdentity). Absent: nullopt.
  std::optional<FileIdentity> identity(const char* name) const;

  [[noreturn]] void invalid(const char* name, const std::string& what) const;

 private:
  Options(Napi::Env env, Napi::Object object) : env_(env), object_(object) {}
  Napi::Value get(const char* name) const;

  Napi::Env env_;
  Napi::Object object_;
};

// info[0] as a path (TypeError unless it is a string): the calls that take only a path.
std::string path_argument(const Napi::CallbackInfo& info);

// info[index] as a FileIdentity ({ dev, ino }, bigints); nullopt when absent or undefined.
std::optional<FileIdentity> identity_argument(const Napi::CallbackInfo& info, size_t index);

// `backingChain`: the backing files of a qcow2 image as the engine checked them (CheckedBacking,
// nearest first; empty when absent), the only ones a job may read besides the image.
std::vector<CheckedBacking> checked_backing_chain(const Options& o);

// The options of a job that makes an image hold a snapshot's content (applyImage, writeQcow2):
// imagePath, storeDir, blockSize, sizeBytes and digests, checked against each other.
template <typename Params>
void read_snapshot_content(const Options& o, Params& p) {
  p.image_path = o.string("imagePath");
  if (o.has("dirFd")) p.dir = o.directory("dirFd");
  p.owner = o.owner();
  p.store_dir = o.string("storeDir");
  p.block_size = o.integer("blockSize");
  if (!is_valid_block_size(p.block_size)) o.invalid("blockSize", "must be a power of two from 64 KiB to 64 MiB");
  p.size_bytes = o.integer("sizeBytes");
  p.digests = o.held_bytes("digests", true);
  const uint64_t blocks = (p.size_bytes + p.block_size - 1) / p.block_size;
  if (p.digests.size() != blocks * kDigestSize)
    o.invalid("digests", "must be ceil(sizeBytes / blockSize) * 32 = " + std::to_string(blocks * kDigestSize) +
                             " bytes long, got " + std::to_string(p.digests.size()));
}

}  // namespace blocksnap::js
