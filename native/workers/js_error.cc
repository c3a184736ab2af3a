#include "workers/js_error.h"

namespace blocksnap::js {

Napi::Error to_js_error(Napi::Env env, const Error& e) {
  Napi::Error err = Napi::Error::New(env, e.what());
  err.Set("code", Napi::String::New(env, e.code_name()));
  if (e.sys_errno != 0) err.Set("errno", Napi::Number::New(env, e.sys_errno));
  if (!e.syscall.empty()) err.Set("syscall", Napi::String::New(env, e.syscall));
  if (!e.path.empty()) err.Set("path", Napi::String::New(env, e.path));
  if (e.block_index) err.Set("blockIndex", Napi::Number::New(env, static_cast<double>(*e.block_index)));
  if (e.digest) err.Set("digest", Napi::String::New(env, to_hex(*e.digest)));
  if (e.image_unchanged) err.Set("imageUnchanged", Napi::Boolean::New(env, true));
  if (!e.written_digests.empty())
    err.Set("writtenDigests", Napi::Buffer<uint8_t>::Copy(env, e.written_digests.data(), e.written_digests.size()));
  return err;
}

Napi::Error internal_error(Napi::Env env, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, "Internal"));
  return err;
}

}  // namespace blocksnap::js
