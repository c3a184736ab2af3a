// One short volume operation (a read, a write, a flush, ...) on the libuv pool, as a promise.
// `work` runs on the pool thread and must not touch N-API; `result` runs on the JS thread after
// it succeeded. Failures reject with the code and details of blocksnap::Error (js_error.h).
#pragma once

#include <napi.h>

#include <functional>
#include <memory>

namespace blocksnap::js {

using VolumeWork = std::function<void()>;
using VolumeResult = std::function<Napi::Value(Napi::Env)>;

Napi::Promise queue_volume_task(Napi::Env env, const char* name, VolumeWork work, VolumeResult result = nullptr);

// Several operations in one pool task, `item(i)` for i in [0, count), each with its own outcome:
// resolves undefined when all succeeded, else an array holding each failed item's error at its
// index. `keep` is released on the JS thread once the task is done (Buffer references, ...).
using VolumeItem = std::function<void(size_t)>;
Napi::Promise queue_volume_batch(Napi::Env env, const char* name, size_t count, VolumeItem item, std::shared_ptr<void> keep = nullptr);

}  // namespace blocksnap::js
