#pragma once

#include <napi.h>

namespace blocksnap::js {

// probeImageLocks(path) → { held: string[], notShared: string[] } (QEMU permission names)
Napi::Value probe_image_locks(const Napi::CallbackInfo& info);

// holdImageLocks(path) → { release(): void }: QEMU's locks on every permission until released.
Napi::Value hold_image_locks(const Napi::CallbackInfo& info);

// openImageDir(path) → { fd, link(from, to), rename(from, to, replace), unlink(name): boolean,
// createFile(name): number, linkFile(fd, name), openFile(name): number, sync(), release() }: an
// image directory opened once without following a symlink (core/image_file.h), and the entry
// operations a job does in it, each relative to that descriptor so that a path component swapped
// meanwhile cannot redirect them. createFile makes a file that has no name until linkFile gives
// it `name` (create_in, link_nameless); linkFile does nothing for one created under its name.
// openFile opens an existing regular file read-only (open_image_in); the caller closes the
// descriptors it gets. `fd` is lent to the writers (they duplicate it); names are single path
// components.
Napi::Value open_image_dir(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
