#include "workers/job_worker.h"

#include <new>

#include "workers/js_error.h"

namespace blocksnap::js {

namespace {

struct ProgressReport {
  double done;
  double total;
};

void call_progress(Napi::Env env, Napi::Function fn, ProgressReport* report) {
  std::unique_ptr<ProgressReport> owned(report);
  // env is null when the function is being torn down with reports still queued.
  if (env == nullptr || fn.IsEmpty()) return;
  fn.Call({Napi::Number::New(env, owned->done), Napi::Number::New(env, owned->total)});
}

}  // namespace

JobWorker::JobWorker(Napi::Env env, const char* name, Napi::Function on_progress)
    : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {
  if (!on_progress.IsEmpty()) {
    // Queue of one: progress is a level, not a log; when JS is busy, stale reports are dropped.
    progress_ = Napi::ThreadSafeFunction::New(env, on_progress, name, 1, 1);
  }
}

JobWorker::~JobWorker() { release_progress(); }

void JobWorker::release_progress() {
  if (progress_) {
    progress_->Release();
    progress_.reset();
  }
}

Napi::Object JobWorker::start() {
  Napi::Env env = Env();
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", deferred_.Promise());
  std::shared_ptr<JobControl> control = control_;
  handle.Set("cancel", Napi::Function::New(env, [control](const Napi::CallbackInfo&) { control->cancel(); }, "cancel"));
  Queue();
  return handle;
}

void JobWorker::Execute() {
  ProgressFn progress;
  if (progress_) {
    progress = [this](uint64_t done, uint64_t total) {
      auto* report = new ProgressReport{static_cast<double>(done), static_cast<double>(total)};
      if (progress_->NonBlockingCall(report, call_progress) != napi_ok) delete report;
    };
  }
  try {
    run(*control_, progress);
  } catch (const Error& e) {
    error_ = e;
    SetError(e.what());
  } catch (const std::bad_alloc&) {
    SetError("out of memory");
  } catch (const std::exception& e) {
    SetError(e.what());
  }
  release_progress();
}

void JobWorker::OnOK() {
  Napi::Env env = Env();
  try {
    deferred_.Resolve(result(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

void JobWorker::OnError(const Napi::Error& e) {
  Napi::Env env = Env();
  deferred_.Reject(error_ ? to_js_error(env, *error_).Value() : internal_error(env, e.Message()).Value());
}

}  // namespace blocksnap::js
