#include "volume/volume_source.h"

namespace blocksnap {

SourceRead VolumeSource::read(uint64_t offset, size_t len, uint8_t* buf) const {
  if (stack_known_zero(layers_, *base_, offset, len)) return {0, true};
  return {read_through(layers_, *base_, offset, len, buf), false};
}

}  // namespace blocksnap
