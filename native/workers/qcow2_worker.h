#pragma once

#include <napi.h>

namespace blocksnap::js {

// writeQcow2(options) → { promise: Promise<Qcow2WriteResult>, cancel(): void }
Napi::Value write_qcow2(const Napi::CallbackInfo& info);

// qcow2Header(path, namedAs?) → the image's header facts and where its backing file is, opening
// nothing else (synchronous: a few small reads).
Napi::Value qcow2_header(const Napi::CallbackInfo& info);

// probeBackingFormat(path, image, name) → "raw" | "qcow2": the format QEMU probes the checked
// backing file at `path` (opened without following a symlink) as, which `image` names and QEMU
// opens as `name`; UnsupportedFormat for a file another format QEMU knows claims.
Napi::Value probe_backing_format(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
