#pragma once

#include <napi.h>

namespace blocksnap::js {

// writeQcow2(options) → { promise: Promise<Qcow2WriteResult>, cancel(): void }
Napi::Value write_qcow2(const Napi::CallbackInfo& info);

// qcow2Info(path) → header facts and the backing chain (synchronous: a few small reads).
Napi::Value qcow2_info(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
