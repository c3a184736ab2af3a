#include "volume/volume_source.h"

#include <algorithm>

#include "core/block_format.h"
#include "io/direct_io.h"

namespace blocksnap {

SourceRead VolumeSource::read(uint64_t offset, size_t len, uint8_t* buf) const {
  if (stack_known_zero(layers_, *base_, offset, len)) return {0, true};
  return {read_through(layers_, *base_, offset, len, buf), false};
}

bool VolumeSource::needs_base(uint64_t i) const noexcept {
  const uint64_t block_size = base_->block_size();
  if (i * block_size >= size_) return false;
  const uint64_t end = std::min(size_, (i + 1) * block_size);
  const uint64_t step = stack_step(layers_);
  for (uint64_t pos = i * block_size; pos < end; pos += step)
    if (layer_at(layers_, pos) < 0) return true;
  return false;
}

void VolumeSource::prefetch_base(uint64_t i) const noexcept {
  if (needs_base(i)) base_->prefetch(i);
}

bool VolumeSource::reads_direct() const { return direct_reads_available(); }

bool VolumeSource::read_framed_direct(uint64_t i, uint8_t* frame, uint64_t& bytes_read) const {
  if (!needs_base(i) || !base_->read_whole_direct(i, frame)) return false;
  const uint64_t block_size = base_->block_size();
  const uint64_t offset = i * block_size;
  const size_t len = static_cast<size_t>(std::min(block_size, size_ - offset));
  bytes_read = len + read_layers(layers_, offset, len, frame + kBlockHeaderSize);
  return true;
}

}  // namespace blocksnap
