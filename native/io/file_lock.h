// An exclusive, non-blocking lock on a file, held for as long as the descriptor is open.
//
// Open file description (OFD) locks rather than flock() or classic POSIX locks: POSIX locks
// belong to the process, so a second open in the same process would silently "succeed" and any
// close() of the file anywhere in the process would drop the lock; OFD locks conflict between
// descriptions even within one process and die only with their own descriptor. The daemon uses
// it on <data-dir>/lock so that two daemons (or two engines in one test process) cannot share a
// data directory.
#pragma once

#include <string>

#include "io/unique_fd.h"

namespace blocksnap {

// Creates the file if needed (0600), locks it and records our pid in it for operators.
// Throws DataDirLocked (naming the holder's pid when the file has one) if someone else holds it.
UniqueFd lock_file_exclusive(const std::string& path);

// An exclusive flock() on the directory itself, which an operator cannot delete from under a
// running daemon the way a lock file can be (a second daemon would then lock a new file of the
// same name). Throws DataDirLocked naming the pid in holder_file; returns an empty descriptor
// where the filesystem has no flock on directories.
UniqueFd lock_directory_exclusive(const std::string& dir, const std::string& holder_file);

}  // namespace blocksnap
