#pragma once

#include <napi.h>

namespace blocksnap::js {

// readBlock(storeDir: string, digest: Buffer(32), expectedLength?: number) → Promise<Buffer>:
// one block's raw bytes, header and SHA-256 checked (core/block_reader.h), read and hashed on
// the libuv thread pool so that serving reads never hashes on the JS thread.
Napi::Value read_block(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
