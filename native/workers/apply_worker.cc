#include "workers/apply_worker.h"

#include "core/apply_image.h"
#include "core/block_format.h"
#include "core/digest.h"
#include "workers/args.h"
#include "workers/job_worker.h"

namespace blocksnap::js {

namespace {

class ApplyWorker : public JobWorker {
 public:
  ApplyWorker(Napi::Env env, ApplyParams params, Napi::Function on_progress)
      : JobWorker(env, "blocksnap.applyImage", on_progress), params_(std::move(params)) {}

 private:
  void run(JobControl& control, const ProgressFn& progress) override {
    result_ = blocksnap::apply_image(params_, control, progress);
  }

  Napi::Value result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("blocksWritten", static_cast<double>(result_.blocks_written));
    o.Set("bytesWritten", static_cast<double>(result_.bytes_written));
    o.Set("holesPunched", static_cast<double>(result_.holes_punched));
    o.Set("blocksUnchanged", static_cast<double>(result_.blocks_unchanged));
    return o;
  }

  ApplyParams params_;
  ApplyResult result_;
};

}  // namespace

Napi::Value apply_image(const Napi::CallbackInfo& info) {
  Options o(info);
  ApplyParams p;
  p.image_path = o.string("imagePath");
  p.store_dir = o.string("storeDir");
  p.block_size = o.integer("blockSize");
  if (!is_valid_block_size(p.block_size)) o.invalid("blockSize", "must be a power of two from 64 KiB to 64 MiB");
  p.size_bytes = o.integer("sizeBytes");
  p.digests = o.bytes("digests", true);
  const uint64_t blocks = (p.size_bytes + p.block_size - 1) / p.block_size;
  if (p.digests.size() != blocks * kDigestSize)
    o.invalid("digests", "must be ceil(sizeBytes / blockSize) * 32 = " + std::to_string(blocks * kDigestSize) +
                             " bytes long, got " + std::to_string(p.digests.size()));
  const std::string mode = o.string("mode");
  if (mode == "create") p.mode = ApplyMode::Create;
  else if (mode == "update") p.mode = ApplyMode::Update;
  else o.invalid("mode", "must be 'create' or 'update'");
  p.threads = o.threads();
  Napi::Function on_progress = o.function("onProgress");
  return (new ApplyWorker(info.Env(), std::move(p), on_progress))->start();
}

}  // namespace blocksnap::js
