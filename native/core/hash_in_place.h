// Hashing a range of a file straight from the page cache, through a read-only mapping, instead of
// copying it into a buffer first. On this class of machine the kernel's copy of a cached 4 MiB
// block costs about a third of hashing it, so a warm scan of mostly unchanged blocks spends a
// fifth of its time copying bytes it then throws away.
//
// The bytes behind a mapping can change while they are hashed (a running guest writes the
// image), so a digest from here may be used only to recognise content already stored (a block
// equal to its parent's, or a hash-only scan). A block that is to be stored is read into a buffer
// and hashed there, so that the stored bytes are exactly the hashed bytes.
//
// A file truncated under the mapping would raise SIGBUS on the next access; the hashing thread
// catches it (a process-wide handler that jumps back only into a thread inside hash_in_place
// and leaves every other SIGBUS to the handler that was there before) and reports the range as
// not hashable, so the caller falls back to reading it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/digest.h"

namespace blocksnap {

struct InPlaceHash {
  bool zero = false;  // every byte zero; `digest` is then not computed
  Digest digest{};
};

// The content of [offset, offset + len) of `fd`, hashed in place. nullopt when the range cannot
// be mapped (offset not page aligned, mmap refused) or the file shrank while it was hashed.
std::optional<InPlaceHash> hash_in_place(int fd, uint64_t offset, size_t len);

}  // namespace blocksnap
