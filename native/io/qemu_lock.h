// QEMU's image locking protocol, so that blocksnap and QEMU see each other.
//
// QEMU (block/file-posix.c) takes OFD read locks on single bytes of every image file it opens:
// byte 100 + p while it holds permission p, byte 200 + p while it does not share permission p
// with other users. Before opening, it tests the bytes it needs with F_OFD_GETLK for a write
// lock, which any read lock held by another open file description makes fail. Permission bits:
// 0 consistent read, 1 write, 2 write unchanged, 3 resize, 4 graph modification (older QEMU).
//
// Probing uses the same test. Holding takes read locks on all of them: the image looks held for
// every permission and shared for none, so QEMU (and qemu-img, qemu-nbd) refuse to open it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/unique_fd.h"

namespace blocksnap {

inline constexpr unsigned kQemuPermCount = 5;
inline constexpr uint64_t kQemuPermWrite = 1u << 1;

struct QemuLocks {
  uint32_t held = 0;        // bit p: someone holds permission p (byte 100 + p)
  uint32_t not_shared = 0;  // bit p: someone refuses to share permission p (byte 200 + p)
  bool any() const { return held != 0 || not_shared != 0; }
};

const char* qemu_perm_name(unsigned bit);

// "write, consistent read" for a mask.
std::string describe_qemu_perms(uint32_t mask);

// The locks other open file descriptions hold on `path` (this process's others included).
// Throws ImageNotFound / IOError.
QemuLocks probe_qemu_locks(const std::string& path);

// Takes QEMU's locks for every permission on an open descriptor (readable), for as long as it
// stays open. Never blocks: read locks do not conflict with QEMU's read locks.
void hold_qemu_locks(int fd, const std::string& path);

// Opens `path` read-only and holds the locks on it until the descriptor is closed.
UniqueFd open_and_hold_qemu_locks(const std::string& path);

}  // namespace blocksnap
