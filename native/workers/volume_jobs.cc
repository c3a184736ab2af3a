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

class ScanBlocksWorker : public JobWorker {
 public:
  ScanBlocksWorker(Napi::Env env, std::unique_ptr<VolumeSource> source, ScanBlocksParams params, Napi::Function on_progress)
      : JobWorker(env, "blocksnap.volume.scanBlocks", on_progress), source_(std::move(source)), params_(std::move(params)) {}

 private:
  void run(JobControl& control, const ProgressFn& progress) override {
    CowVolume::VerifierPause pause;
    result_ = scan_volume_blocks(*source_, params_, control, progress);
  }

  Napi::Value result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    set_scan_counts(env, o, result_);
    return o;
  }

  std::unique_ptr<VolumeSource> source_;
  ScanBlocksParams params_;
  ScanBlocksResult result_;
};

class FlattenWorker : public JobWorker {
 public:
  FlattenWorker(Napi::Env env, std::unique_ptr<BlockSource> source, std::string image_path,
                std::shared_ptr<const UniqueFd> dir, bool qcow2, unsigned threads, Napi::Function on_progress)
      : JobWorker(env, "blocksnap.volume.flattenTo", on_progress),
        source_(std::move(source)),
        image_path_(std::move(image_path)),
        dir_(std::move(dir)),
        qcow2_(qcow2),
        threads_(threads) {}

 private:
  void run(JobControl& control, const ProgressFn& progress) override {
    CowVolume::VerifierPause pause;
    // Both writers take the same two settings and report the same two numbers we return.
    const auto write = [&](auto options, auto writer) {
      options.image_path = image_path_;
      options.dir = dir_;
      options.threads = threads_;
      const auto r = writer(*source_, options, control, progress);
      size_bytes_ = r.size_bytes;
      bytes_written_ = r.bytes_written;
    };
    if (qcow2_) write(Qcow2ImageOptions{}, write_qcow2_from_source);
    else write(RawWriteParams{}, write_raw_from_source);
  }

  Napi::Value result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("sizeBytes", static_cast<double>(size_bytes_));
    o.Set("bytesWritten", static_cast<double>(bytes_written_));
    return o;
  }

  std::unique_ptr<BlockSource> source_;
  std::string image_path_;
  std::shared_ptr<const UniqueFd> dir_;
  bool qcow2_;
  unsigned threads_;
  uint64_t size_bytes_ = 0;
  uint64_t bytes_written_ = 0;
};

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
  return (new ScanBlocksWorker(info.Env(), std::move(source), std::move(p), on_progress))->start();
}

Napi::Value start_flatten(const Napi::CallbackInfo& info, const std::shared_ptr<CowVolume>& volume) {
  Options o(info);
  std::string image_path = o.string("imagePath");
  std::shared_ptr<const UniqueFd> dir = o.directory("dirFd");
  const std::string format = o.string("format");
  if (format != "raw" && format != "qcow2") o.invalid("format", "must be 'raw' or 'qcow2'");
  const unsigned threads = o.threads();
  Napi::Function on_progress = o.function("onProgress");
  std::unique_ptr<VolumeSource> source = frozen_source(info.Env(), o, *volume);
  return (new FlattenWorker(info.Env(), std::move(source), std::move(image_path), std::move(dir), format == "qcow2", threads, on_progress))->start();
}

}  // namespace blocksnap::js
