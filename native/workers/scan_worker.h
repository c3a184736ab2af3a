#pragma once

#include <napi.h>

namespace blocksnap::js {

// scanImage(options) → { promise: Promise<ScanResult>, cancel(): void }
Napi::Value scan_image(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
