#pragma once

#include <napi.h>

namespace blocksnap::js {

// lockFile(path) → { release(): void }: synchronous (one open + one fcntl). The lock is held
// until release() is called, or until the returned object is garbage-collected.
Napi::Value lock_file(const Napi::CallbackInfo& info);

// lockDirectory(dir, holderFile) → { release(): void }: an exclusive flock() on the directory;
// DataDirLocked names the pid in holderFile. Held like lockFile's.
Napi::Value lock_directory(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
