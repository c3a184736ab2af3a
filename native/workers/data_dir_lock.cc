#include "workers/data_dir_lock.h"

#include "core/error.h"
#include "io/file_lock.h"
#include "workers/args.h"
#include "workers/fd_handle.h"
#include "workers/js_error.h"

namespace blocksnap::js {

Napi::Value lock_file(const Napi::CallbackInfo& info) {
  const std::string path = path_argument(info);
  try {
    return fd_handle(info.Env(), lock_file_exclusive(path));
  } catch (const Error& e) {
    throw to_js_error(info.Env(), e);
  }
}

Napi::Value lock_directory(const Napi::CallbackInfo& info) {
  const std::string dir = path_argument(info);
  if (info.Length() < 2 || !info[1].IsString()) throw Napi::TypeError::New(info.Env(), "the second argument (holderFile) must be a string");
  const std::string holder_file = info[1].As<Napi::String>().Utf8Value();
  try {
    return fd_handle(info.Env(), lock_directory_exclusive(dir, holder_file));
  } catch (const Error& e) {
    throw to_js_error(info.Env(), e);
  }
}

}  // namespace blocksnap::js
