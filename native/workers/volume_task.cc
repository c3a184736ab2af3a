#include "workers/volume_task.h"

#include <optional>
#include <string>

#include "core/error.h"
#include "workers/js_error.h"

namespace blocksnap::js {

namespace {

class VolumeTask : public Napi::AsyncWorker {
 public:
  VolumeTask(Napi::Env env, const char* name, VolumeWork work, VolumeResult result)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), result_(std::move(result)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

 private:
  void Execute() override {
    try {
      work_();
    } catch (const Error& e) {
      error_.emplace(e);
    } catch (const std::bad_alloc&) {
      internal_ = "out of memory";
    } catch (const std::exception& e) {
      internal_ = e.what();
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (error_) return deferred_.Reject(to_js_error(env, *error_).Value());
    if (!internal_.empty()) return deferred_.Reject(internal_error(env, internal_).Value());
    try {
      deferred_.Resolve(result_ ? result_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  VolumeWork work_;
  VolumeResult result_;
  std::optional<Error> error_;
  std::string internal_;
};

}  // namespace

Napi::Promise queue_volume_task(Napi::Env env, const char* name, VolumeWork work, VolumeResult result) {
  auto* task = new VolumeTask(env, name, std::move(work), std::move(result));
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

}  // namespace blocksnap::js
