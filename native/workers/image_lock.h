#pragma once

#include <napi.h>

namespace blocksnap::js {

// probeImageLocks(path) → { held: string[], notShared: string[] } (QEMU permission names)
Napi::Value probe_image_locks(const Napi::CallbackInfo& info);

// holdImageLocks(path) → { release(): void }: QEMU's locks on every permission until released.
Napi::Value hold_image_locks(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
