#pragma once

#include <napi.h>

namespace blocksnap::js {

// verifyBlocks(options) → { promise: Promise<{ checked, problems }>, cancel(): void }
Napi::Value verify_blocks(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
