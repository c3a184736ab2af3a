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

}  // namespace blocksnap::js
