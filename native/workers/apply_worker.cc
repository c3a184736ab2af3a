#include "workers/apply_worker.h"

#include "core/apply_image.h"
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
  read_snapshot_content(o, p);
  const std::string mode = o.string("mode");
  if (mode == "create") p.mode = ApplyMode::Create;
  else if (mode == "update") p.mode = ApplyMode::Update;
  else o.invalid("mode", "must be 'create' or 'update'");
  p.threads = o.threads();
  Napi::Function on_progress = o.function("onProgress");
  return (new ApplyWorker(info.Env(), std::move(p), on_progress))->start();
}

}  // namespace blocksnap::js
