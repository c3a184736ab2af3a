#include "workers/verify_worker.h"

#include "core/digest.h"
#include "core/verify_blocks.h"
#include "workers/args.h"
#include "workers/job_worker.h"

namespace blocksnap::js {

namespace {

Napi::Value verify_result(Napi::Env env, const VerifyResult& r) {
  Napi::Array problems = Napi::Array::New(env, r.problems.size());
  for (uint32_t i = 0; i < r.problems.size(); ++i) {
    const VerifyProblem& p = r.problems[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("digest", to_hex(p.digest));
    o.Set("reason", verify_reason_name(p.reason));
    o.Set("message", p.message);
    problems.Set(i, o);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("checked", static_cast<double>(r.checked));
  o.Set("problems", problems);
  return o;
}

}  // namespace

Napi::Value verify_blocks(const Napi::CallbackInfo& info) {
  Options o(info);
  VerifyParams p;
  p.store_dir = o.string("storeDir");
  p.digests = o.held_bytes("digests", true);
  if (p.digests.size() % kDigestSize != 0) o.invalid("digests", "must be a multiple of 32 bytes long");
  p.threads = o.threads();
  Napi::Function on_progress = o.function("onProgress");
  return start_job(
      info.Env(), "blocksnap.verifyBlocks", on_progress,
      [p = std::move(p)](JobControl& control, const ProgressFn& progress) { return blocksnap::verify_blocks(p, control, progress); },
      verify_result);
}

}  // namespace blocksnap::js
