// How QEMU reads a backing file name stored in a qcow2 header, so that a snapshot reads exactly
// the file the VM reads, or nothing.
//
// QEMU takes a name with a colon before its first '/' as "protocol:rest" (path_has_protocol):
// `json:` is an inline option list, `file:` the plain file `rest`, and any other prefix another
// driver (nbd:, http:, rbd:, ...) or an unknown protocol QEMU refuses. Neither is a file in an
// image root. A `file:` name is also not made absolute against the image's directory
// (bdrv_make_absolute_filename leaves protocol names alone): QEMU opens `rest` from its own
// working directory, which the daemon cannot know, so only an absolute `file:/...` is read.
#pragma once

#include <string>

namespace blocksnap {

// The path QEMU opens for the backing name `backing_name` of the image it opened as
// `image_path`: an absolute name as it is, a relative one against the image's directory, a
// `file:` name without its prefix. Throws UnsupportedFormat, naming `image_path` and the prefix,
// for any other protocol name and for a relative `file:` name.
std::string resolve_backing_path(const std::string& image_path, const std::string& backing_name);

}  // namespace blocksnap
