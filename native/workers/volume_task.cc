#include "workers/volume_task.h"

#include <optional>
#include <string>
#include <vector>

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

Napi::Promise queue_volume_batch(Napi::Env env, const char* name, size_t count, VolumeItem item, std::shared_ptr<void> keep) {
  struct Outcomes {
    std::vector<std::optional<Error>> errors;
    std::vector<std::string> internal;
    bool failed = false;
  };
  auto out = std::make_shared<Outcomes>();
  out->errors.resize(count);
  out->internal.resize(count);
  return queue_volume_task(
      env, name,
      [out, count, item = std::move(item)] {
        for (size_t i = 0; i < count; ++i) {
          try {
            item(i);
          } catch (const Error& e) {
            out->errors[i].emplace(e);
            out->failed = true;
          } catch (const std::bad_alloc&) {
            out->internal[i] = "out of memory";
            out->failed = true;
          } catch (const std::exception& e) {
            out->internal[i] = e.what();
            out->failed = true;
          }
        }
      },
      [out, keep = std::move(keep)](Napi::Env env) -> Napi::Value {
        if (!out->failed) return env.Undefined();
        Napi::Array a = Napi::Array::New(env, out->errors.size());
        for (size_t i = 0; i < out->errors.size(); ++i) {
          if (out->errors[i]) a.Set(static_cast<uint32_t>(i), to_js_error(env, *out->errors[i]).Value());
          else if (!out->internal[i].empty()) a.Set(static_cast<uint32_t>(i), internal_error(env, out->internal[i]).Value());
          else a.Set(static_cast<uint32_t>(i), env.Undefined());
        }
        return a;
      });
}

}  // namespace blocksnap::js
