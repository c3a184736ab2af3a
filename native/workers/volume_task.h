// One short volume operation (a read, a write, a flush, ...) on the libuv pool, as a promise.
// `work` runs on the pool thread and must not touch N-API; `result` runs on the JS thread after
// it succeeded. Failures reject with the code and details of blocksnap::Error (js_error.h).
#pragma once

#include <napi.h>

#include <functional>

namespace blocksnap::js {

using VolumeWork = std::function<void()>;
using VolumeResult = std::function<Napi::Value(Napi::Env)>;

Napi::Promise queue_volume_task(Napi::Env env, const char* name, VolumeWork work, VolumeResult result = nullptr);

}  // namespace blocksnap::js
