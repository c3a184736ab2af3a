// Entry point of blocksnap_native.node: exports only. The typed API and its documentation live
// in src/native/index.ts, the only module that loads this file.
#include <napi.h>

#include "workers/apply_worker.h"
#include "workers/data_dir_lock.h"
#include "workers/hash_buffer.h"
#include "workers/scan_worker.h"
#include "workers/verify_worker.h"

static Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("scanImage", Napi::Function::New(env, blocksnap::js::scan_image, "scanImage"));
  exports.Set("applyImage", Napi::Function::New(env, blocksnap::js::apply_image, "applyImage"));
  exports.Set("verifyBlocks", Napi::Function::New(env, blocksnap::js::verify_blocks, "verifyBlocks"));
  exports.Set("lockFile", Napi::Function::New(env, blocksnap::js::lock_file, "lockFile"));
  exports.Set("hashBuffer", Napi::Function::New(env, blocksnap::js::hash_buffer, "hashBuffer"));
  return exports;
}

NODE_API_MODULE(blocksnap_native, init)
