#include "workers/data_dir_lock.h"

#include <memory>

#include "core/error.h"
#include "io/file_lock.h"
#include "workers/js_error.h"

namespace blocksnap::js {

Napi::Value lock_file(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  std::shared_ptr<UniqueFd> fd;
  try {
    fd = std::make_shared<UniqueFd>(lock_file_exclusive(path));
  } catch (const Error& e) {
    throw to_js_error(env, e);
  }
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("release", Napi::Function::New(env, [fd](const Napi::CallbackInfo&) { fd->reset(); }, "release"));
  return handle;
}

}  // namespace blocksnap::js
