// Opening a file the store names (a block file, a granule file) for reading, when whoever can
// write under the data dir may have put something else under that name. open(2) of a FIFO blocks
// until some writer opens it, in a thread that neither a cancel nor SIGTERM reaches: O_NONBLOCK
// makes that open return at once, as images are opened (core/image_file.cc). O_NOFOLLOW keeps a
// symlink from leading anywhere else.
#pragma once

#include <fcntl.h>

namespace blocksnap {

constexpr int kOpenRegularFlags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;

// After an open with kOpenRegularFlags: whether `fd` is a regular file. When it is, O_NONBLOCK,
// there only so that the open could not hang, is cleared.
bool opened_regular(int fd) noexcept;

// Clears O_NONBLOCK on `fd`, a regular file opened with it only so that the open could not hang
// (regular file I/O ignores it; cleared so that nothing downstream meets EAGAIN all the same).
void clear_nonblock(int fd) noexcept;

// Whether an open with kOpenRegularFlags that failed with `err` met something under `path` that
// is not a regular file: a symlink (ELOOP, from O_NOFOLLOW) or a socket (ENXIO). Asks lstat(2),
// since ELOOP also means too many links on the way to the last component.
bool refused_as_not_regular(const char* path, int err) noexcept;

}  // namespace blocksnap
