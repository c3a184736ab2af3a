#include "workers/scan_worker.h"

#include "core/block_format.h"
#include "core/digest.h"
#include "core/scan_image.h"
#include "workers/args.h"
#include "workers/job_worker.h"
#include "workers/scan_counts.h"

namespace blocksnap::js {

namespace {

Napi::Value scan_result(Napi::Env env, ScanResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("sizeBytes", static_cast<double>(r.size_bytes));
  o.Set("blockCount", static_cast<double>(r.block_count));
  o.Set("progressTotal", static_cast<double>(r.progress_total));
  set_scan_counts(env, o, r);
  return o;
}

}  // namespace

Napi::Value scan_image(const Napi::CallbackInfo& info) {
  Options o(info);
  ScanParams p;
  p.image_path = o.string("imagePath");
  if (o.has("format")) {
    const std::string format = o.string("format");
    if (format == "qcow2") p.format = ImageFormat::Qcow2;
    else if (format != "raw") o.invalid("format", "must be 'raw' or 'qcow2'");
  }
  if (p.format == ImageFormat::Qcow2) {
    // Never the headers' names: a scan reads only backing files the engine checked against the
    // image roots, so an image that names one and comes without it is refused.
    p.checked_backing = checked_backing_chain(o);
  } else if (o.has("backingChain")) {
    o.invalid("backingChain", "is for qcow2 images only");
  }
  p.image_id = o.identity("imageId");
  p.store_dir = o.string("storeDir");
  if (o.has("granuleDir")) p.granule_dir = o.string("granuleDir");
  p.block_size = o.integer("blockSize");
  if (!is_valid_block_size(p.block_size)) o.invalid("blockSize", "must be a power of two from 64 KiB to 64 MiB");
  p.parent_digests = o.held_bytes("parentDigests", false);
  if (p.parent_digests.size() % kDigestSize != 0) o.invalid("parentDigests", "must be a multiple of 32 bytes long");
  p.damaged_digests = o.bytes("damagedDigests", false);
  if (p.damaged_digests.size() % kDigestSize != 0) o.invalid("damagedDigests", "must be a multiple of 32 bytes long");
  p.write_blocks = o.boolean("writeBlocks", true);
  p.threads = o.threads();
  Napi::Function on_progress = o.function("onProgress");
  return start_job(
      info.Env(), "blocksnap.scanImage", on_progress,
      [p = std::move(p)](JobControl& control, const ProgressFn& progress) { return blocksnap::scan_image(p, control, progress); },
      scan_result);
}

}  // namespace blocksnap::js
