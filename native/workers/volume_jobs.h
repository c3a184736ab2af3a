// The long jobs of a Volume (scanBlocks, flattenTo): { promise, cancel } with progress, like every
// other job (job_worker.h). They read through a frozen prefix of the layers, which they hold on
// their own, so the volume keeps serving I/O meanwhile.
#pragma once

#include <napi.h>

#include <memory>

namespace blocksnap {
class CowVolume;
}

namespace blocksnap::js {

// scanBlocks({ blocks: Uint32Array, layerCount, threads?, onProgress? })
Napi::Value start_scan_blocks(const Napi::CallbackInfo& info, const std::shared_ptr<CowVolume>& volume);

// flattenTo({ layerCount, imagePath, format: 'raw' | 'qcow2', threads?, onProgress? })
Napi::Value start_flatten(const Napi::CallbackInfo& info, const std::shared_ptr<CowVolume>& volume);

}  // namespace blocksnap::js
