#pragma once

#include <napi.h>

namespace blocksnap::js {

// hashBuffer(data: Buffer) → Buffer (32 bytes): synchronous SHA-256, for tests and tools.
Napi::Value hash_buffer(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
