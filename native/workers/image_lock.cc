#include "workers/image_lock.h"

#include "core/error.h"
#include "io/qemu_lock.h"
#include "workers/args.h"
#include "workers/fd_handle.h"
#include "workers/js_error.h"

namespace blocksnap::js {

namespace {

Napi::Array perm_names(Napi::Env env, uint32_t mask) {
  Napi::Array a = Napi::Array::New(env);
  uint32_t n = 0;
  for (unsigned bit = 0; bit < kQemuPermCount; ++bit)
    if (mask >> bit & 1) a.Set(n++, qemu_perm_name(bit));
  return a;
}

}  // namespace

Napi::Value probe_image_locks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = path_argument(info);
  try {
    const QemuLocks l = probe_qemu_locks(path);
    Napi::Object o = Napi::Object::New(env);
    o.Set("held", perm_names(env, l.held));
    o.Set("notShared", perm_names(env, l.not_shared));
    return o;
  } catch (const Error& e) {
    throw to_js_error(env, e);
  }
}

Napi::Value hold_image_locks(const Napi::CallbackInfo& info) {
  const std::string path = path_argument(info);
  try {
    return fd_handle(info.Env(), open_and_hold_qemu_locks(path));
  } catch (const Error& e) {
    throw to_js_error(info.Env(), e);
  }
}

}  // namespace blocksnap::js
