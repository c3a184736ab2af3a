// The format QEMU finds in a backing file whose format its image does not record. QEMU then
// probes every format it knows (bdrv_probe_all) and raw only wins when none claims the file; so a
// file another format claims must not be read as raw, or a snapshot would hold that container's
// bytes while the VM sees the disk inside it. This reader knows qcow2 and raw only: a file that
// starts the way another format QEMU probes starts is refused rather than read as raw.
#pragma once

#include <span>
#include <string>

#include "formats/block_source.h"

namespace blocksnap {

// The bytes of a file's start the probe looks at (QEMU's probe buffer is 2 KiB as well).
inline constexpr size_t kProbeBytes = 2048;

// The format of a backing file QEMU opens as `name` and whose first bytes are `head` (fewer when
// the file is shorter): qcow2 when it starts with the qcow2 magic, raw when no format QEMU probes
// claims it. Throws UnsupportedFormat naming `image` (the image that refers to it), `name` and
// the format found otherwise.
ImageFormat probe_backing_format(std::span<const uint8_t> head, const std::string& image, const std::string& name);

}  // namespace blocksnap
