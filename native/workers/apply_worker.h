#pragma once

#include <napi.h>

namespace blocksnap::js {

// applyImage(options) → { promise: Promise<ApplyResult>, cancel(): void }
Napi::Value apply_image(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
