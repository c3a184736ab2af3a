// The JS class `Volume` over volume/cow_volume.h, and createVolumeLayer. src/native/volume.ts
// wraps both with validation and documentation; this layer only rejects garbage safely.
#pragma once

#include <napi.h>

namespace blocksnap::js {

// The constructor, for exports.Volume.
Napi::Function volume_class(Napi::Env env);

// createVolumeLayer({ dataPath, mapPath, sizeBytes, layerId }) → Promise<void>
Napi::Value create_volume_layer(const Napi::CallbackInfo& info);

// countWrittenBytes({ mapPaths, sizeBytes }) → Promise<number>: written_bytes_of_maps
// (volume/written_count.h) on the pool. countWrittenBytesNow: the same on the calling thread.
Napi::Value count_written_bytes(const Napi::CallbackInfo& info);
Napi::Value count_written_bytes_now(const Napi::CallbackInfo& info);

// closeIdleBlockFiles({ idleMs }) → number: BlockFileCache::close_idle (volume/base_view.h) over
// every volume of the process, on the calling thread; the count of block files it closed.
Napi::Value close_idle_block_files(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
