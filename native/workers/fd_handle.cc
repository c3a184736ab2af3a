#include "workers/fd_handle.h"

#include <memory>

namespace blocksnap::js {

Napi::Object fd_handle(Napi::Env env, UniqueFd fd) {
  auto held = std::make_shared<UniqueFd>(std::move(fd));
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("release", Napi::Function::New(env, [held](const Napi::CallbackInfo&) { held->reset(); }, "release"));
  return handle;
}

}  // namespace blocksnap::js
