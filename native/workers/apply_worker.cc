#include "workers/apply_worker.h"

#include "core/apply_image.h"
#include "core/error.h"
#include "workers/args.h"
#include "workers/blocking_js_call.h"
#include "workers/job_worker.h"

namespace blocksnap::js {

namespace {

Napi::Value apply_result(Napi::Env env, const ApplyResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("blocksWritten", static_cast<double>(r.blocks_written));
  o.Set("bytesWritten", static_cast<double>(r.bytes_written));
  o.Set("holesPunched", static_cast<double>(r.holes_punched));
  o.Set("blocksUnchanged", static_cast<double>(r.blocks_unchanged));
  o.Set("blocksZeroed", static_cast<double>(r.blocks_zeroed));
  o.Set("progressTotal", static_cast<double>(r.progress_total));
  return o;
}

}  // namespace

Napi::Value apply_image(const Napi::CallbackInfo& info) {
  Options o(info);
  ApplyParams p;
  read_snapshot_content(o, p);
  const std::string mode = o.string("mode");
  if (mode == "create") p.mode = ApplyMode::Create;
  else if (mode == "update") p.mode = ApplyMode::Update;
  else o.invalid("mode", "must be 'create' or 'update'");
  p.image_id = o.identity("imageId");
  if (p.image_id && p.mode != ApplyMode::Update) o.invalid("imageId", "is for mode 'update' only");
  p.threads = o.threads();
  if (Napi::Function before_write = o.function("beforeWrite"); !before_write.IsEmpty()) {
    if (p.mode != ApplyMode::Update) o.invalid("beforeWrite", "must be absent for mode 'create'");
    p.before_write = [call = blocking_js_call(info.Env(), before_write, "blocksnap.applyImage.beforeWrite")] {
      if (!call()) throw Error(ErrorCode::Cancelled, "the apply was stopped before its first write by its caller");
    };
  }
  Napi::Function on_progress = o.function("onProgress");
  return start_job(
      info.Env(), "blocksnap.applyImage", on_progress,
      [p = std::move(p)](JobControl& control, const ProgressFn& progress) { return blocksnap::apply_image(p, control, progress); },
      apply_result);
}

}  // namespace blocksnap::js
