// Images written from a block source the way the jobs write them (two threads), for the writer tests.
#pragma once

#include <cstdint>
#include <string>

#include "core/parallel.h"
#include "formats/block_source.h"
#include "formats/qcow2_writer.h"
#include "formats/raw_writer.h"

namespace testing_support {

// A new raw image at `path`, written in `chunk`-sized pieces.
inline blocksnap::RawWriteResult write_raw(const blocksnap::BlockSource& source, const std::string& path,
                                           uint64_t chunk = 1024 * 1024) {
  blocksnap::RawWriteParams p;
  p.image_path = path;
  p.chunk_size = chunk;
  p.threads = 2;
  blocksnap::JobControl control;
  return blocksnap::write_raw_from_source(source, p, control, nullptr);
}

// A new qcow2 image at `path`; with `replace`, a rollback's new image, renamed over that one.
inline blocksnap::Qcow2WriteResult write_qcow2(const blocksnap::BlockSource& source, const std::string& path,
                                               uint32_t cluster_bits = 16, const std::string& replace = "") {
  blocksnap::Qcow2ImageOptions o;
  o.image_path = path;
  o.cluster_bits = cluster_bits;
  o.replace = replace;
  o.chunk_size = 1024 * 1024;
  o.threads = 2;
  blocksnap::JobControl control;
  return blocksnap::write_qcow2_from_source(source, o, control, nullptr);
}

}  // namespace testing_support
