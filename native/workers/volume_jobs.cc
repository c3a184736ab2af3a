#include "workers/volume_jobs.h"

#include "core/digest.h"
#include "core/error.h"
#include "formats/qcow2_writer.h"
#include "formats/raw_writer.h"
#include "volume/cow_volume.h"
#include "volume/scan_blocks.h"
#include "workers/args.h"
#include "workers/job_worker.h"
#include "workers/js_error.h"
#include "workers/scan_counts.h"

namespace blocksnap::js {

namespace {

// The source is taken on the JS thread, when the call is made: the job reads the layers as they
// were then, whatever push_layer or rebase does while it runs.
std::unique_ptr<VolumeSource> frozen_source(Napi::Env env, const Options& o, CowVolume& volume) {
  const uint64_t k = o.integer("layerCount");
  try {
    return volume.source(k);
  } catch (const Error& e) {
    throw to_js_error(env, e);
  } catch (const std::logic_error& e) {
    throw internal_error(env, e.what());
  }
}

Napi::Value scan_blocks_result(Napi::Env env, ScanBlocksResult& r) {
  Napi::Object o = Napi::Object::New(env);
  set_scan_counts(env, o, r);
  return o;
}

// What both writers report and flattenTo returns.
struct FlattenResult {
  uint64_t size_bytes = 0;
  uint64_t bytes_written = 0;
};

Napi::Value flatten_result(Napi::Env env, const FlattenResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("sizeBytes", static_cast<double>(r.size_bytes));
  o.Set("bytesWritten", static_cast<double>(r.bytes_written));
  return o;
}

}  // namespace

Napi::Value start_scan_blocks(const Napi::CallbackInfo& info, const std::shared_ptr<CowVolume>& volume) {
  Options o(info);
  Napi::Value blocks = info[0].As<Napi::Object>().Get("blocks");
  if (!blocks.IsTypedArray() || blocks.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    throw Napi::TypeError::New(info.Env(), "options.blocks must be a Uint32Array");
  auto a = blocks.As<Napi::Uint32Array>();
  ScanBlocksParams p;
  p.store_dir = volume->store_dir();
  p.granule_dir = volume->granule_dir();
  p.block_size = volume->block_size();
  p.blocks.assign(a.Data(), a.Data() + a.ElementLength());
  p.damaged_digests = o.bytes("damagedDigests", false);
  if (p.damaged_digests.size() % kDigestSize != 0) o.invalid("damagedDigests", "must be a multiple of 32 bytes long");
  p.threads = o.threads();
  Napi::Function on_progress = o.function("onProgress");
  std::unique_ptr<VolumeSource> source = frozen_source(info.Env(), o, *volume);
  return start_job(
      info.Env(), "blocksnap.volume.scanBlocks", on_progress,
      [source = std::move(source), p = std::move(p)](JobControl& control, const ProgressFn& progress) {
        CowVolume::VerifierPause pause;
        return scan_volume_blocks(*source, p, control, progress);
      },
      scan_blocks_result);
}

Napi::Value start_flatten(const Napi::CallbackInfo& info, const std::shared_ptr<CowVolume>& volume) {
  Options o(info);
  std::string image_path = o.string("imagePath");
  std::shared_ptr<const UniqueFd> dir = o.directory("dirFd");
  std::optional<FileOwner> owner = o.owner();
  const std::string format = o.string("format");
  if (format != "raw" && format != "qcow2") o.invalid("format", "must be 'raw' or 'qcow2'");
  const unsigned threads = o.threads();
  Napi::Function on_progress = o.function("onProgress");
  std::unique_ptr<VolumeSource> source = frozen_source(info.Env(), o, *volume);
  return start_job(
      info.Env(), "blocksnap.volume.flattenTo", on_progress,
      [source = std::move(source), image_path = std::move(image_path), dir = std::move(dir), owner, qcow2 = format == "qcow2", threads](
          JobControl& control, const ProgressFn& progress) {
        CowVolume::VerifierPause pause;
        // Both writers take the same settings and report the same two numbers.
        const auto write = [&](auto options, auto writer) {
          options.image_path = image_path;
          options.dir = dir;
          options.owner = owner;
          options.threads = threads;
          const auto r = writer(*source, options, control, progress);
          return FlattenResult{r.size_bytes, r.bytes_written};
        };
        return qcow2 ? write(Qcow2ImageOptions{}, write_qcow2_from_source) : write(RawWriteParams{}, write_raw_from_source);
      },
      flatten_result);
}

}  // namespace blocksnap::js
