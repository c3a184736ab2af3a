#include "workers/volume_task.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "workers/js_error.h"

namespace blocksnap::js {

namespace {

// How a call that may throw ended: nothing, an Error for the caller, or an internal failure.
struct Outcome {
  std::optional<Error> error;
  std::optional<std::string> internal;  // what() of anything else thrown, which may be empty
  bool failed() const noexcept { return error.has_value() || internal.has_value(); }
  Napi::Value to_js(Napi::Env env) const {
    if (error) return to_js_error(env, *error).Value();
    if (internal) return internal_error(env, *internal).Value();
    return env.Undefined();
  }
};

template <typename F>
Outcome run_caught(F&& f) {
  Outcome o;
  try {
    f();
  } catch (const Error& e) {
    o.error.emplace(e);
  } catch (const std::bad_alloc&) {
    o.internal.emplace("out of memory");
  } catch (const std::exception& e) {
    o.internal.emplace(e.what());
  }
  return o;
}

class VolumeTask : public Napi::AsyncWorker {
 public:
  VolumeTask(Napi::Env env, const char* name, VolumeWork work, VolumeResult result)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), result_(std::move(result)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

 private:
  void Execute() override { outcome_ = run_caught(work_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (outcome_.failed()) return deferred_.Reject(outcome_.to_js(env));
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
  Outcome outcome_;
};

}  // namespace

Napi::Promise queue_volume_task(Napi::Env env, const char* name, VolumeWork work, VolumeResult result) {
  auto* task = new VolumeTask(env, name, std::move(work), std::move(result));
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

Napi::Promise queue_volume_batch(Napi::Env env, const char* name, size_t count, VolumeItem item, std::shared_ptr<void> keep) {
  auto outcomes = std::make_shared<std::vector<Outcome>>(count);
  return queue_volume_task(
      env, name,
      [outcomes, count, item = std::move(item)] {
        for (size_t i = 0; i < count; ++i) (*outcomes)[i] = run_caught([&] { item(i); });
      },
      [outcomes, keep = std::move(keep)](Napi::Env env) -> Napi::Value {
        if (std::none_of(outcomes->begin(), outcomes->end(), [](const Outcome& o) { return o.failed(); })) return env.Undefined();
        Napi::Array a = Napi::Array::New(env, outcomes->size());
        for (size_t i = 0; i < outcomes->size(); ++i) a.Set(static_cast<uint32_t>(i), (*outcomes)[i].to_js(env));
        return a;
      });
}

}  // namespace blocksnap::js
