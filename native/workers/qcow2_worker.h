#pragma once

#include <napi.h>

namespace blocksnap::js {

// writeQcow2(options) → { promise: Promise<Qcow2WriteResult>, cancel(): void }
Napi::Value write_qcow2(const Napi::CallbackInfo& info);

// qcow2Header(path, namedAs?) → the image's header facts and where its backing file is, opening
// nothing else (synchronous: a few small reads).
Napi::Value qcow2_header(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
