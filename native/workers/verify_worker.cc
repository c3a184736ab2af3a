#include "workers/verify_worker.h"

#include "core/digest.h"
#include "core/verify_blocks.h"
#include "workers/args.h"
#include "workers/job_worker.h"

namespace blocksnap::js {

namespace {

class VerifyWorker : public JobWorker {
 public:
  VerifyWorker(Napi::Env env, VerifyParams params, Napi::Function on_progress)
      : JobWorker(env, "blocksnap.verifyBlocks", on_progress), params_(std::move(params)) {}

 private:
  void run(JobControl& control, const ProgressFn& progress) override {
    result_ = blocksnap::verify_blocks(params_, control, progress);
  }

  Napi::Value result(Napi::Env env) override {
    Napi::Array problems = Napi::Array::New(env, result_.problems.size());
    for (uint32_t i = 0; i < result_.problems.size(); ++i) {
      const VerifyProblem& p = result_.problems[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("digest", to_hex(p.digest));
      o.Set("reason", verify_reason_name(p.reason));
      o.Set("message", p.message);
      problems.Set(i, o);
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("checked", static_cast<double>(result_.checked));
    o.Set("problems", problems);
    return o;
  }

  VerifyParams params_;
  VerifyResult result_;
};

}  // namespace

Napi::Value verify_blocks(const Napi::CallbackInfo& info) {
  Options o(info);
  VerifyParams p;
  p.store_dir = o.string("storeDir");
  p.digests = o.bytes("digests", true);
  if (p.digests.size() % kDigestSize != 0) o.invalid("digests", "must be a multiple of 32 bytes long");
  p.threads = o.threads();
  Napi::Function on_progress = o.function("onProgress");
  return (new VerifyWorker(info.Env(), std::move(p), on_progress))->start();
}

}  // namespace blocksnap::js
