// Deallocates a range so it reads as zeros and takes no space, keeping the file size.
#pragma once

#include <cstdint>
#include <string>

namespace blocksnap {

// Returns false if the filesystem cannot punch holes (EOPNOTSUPP): the caller writes zeros.
// Throws IOError / PermissionDenied on any other failure.
bool punch_hole(int fd, uint64_t offset, uint64_t len, const std::string& path);

}  // namespace blocksnap
