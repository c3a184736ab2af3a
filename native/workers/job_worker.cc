#include "workers/job_worker.h"

#include <new>

#include "workers/js_error.h"

namespace blocksnap::js {

namespace {

struct ProgressReport {
  double done;
  double total;
  JobPhase phase;
};

void call_progress(Napi::Env env, Napi::Function fn, ProgressReport* report) {
  std::unique_ptr<ProgressReport> owned(report);
  // env is null when the function is being torn down with reports still queued.
  if (env == nullptr || fn.IsEmpty()) return;
  fn.Call({Napi::Number::New(env, owned->done), Napi::Number::New(env, owned->total), phase_value(env, owned->phase)});
}

}  // namespace

Napi::Value phase_value(Napi::Env env, JobPhase phase) {
  switch (phase) {
    case JobPhase::Comparing: return Napi::String::New(env, "comparing");
    case JobPhase::Writing: return Napi::String::New(env, "writing");
    case JobPhase::None: break;
  }
  return env.Undefined();
}

JobWorker::JobWorker(Napi::Env env, const char* name, Napi::Function on_progress)
    : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {
  if (!on_progress.IsEmpty()) {
    // Queue of one: progress is a level, not a log; when JS is busy, stale reports are dropped.
    progress_ = Napi::ThreadSafeFunction::New(env, on_progress, name, 1, 1);
    on_progress_ = Napi::Persistent(on_progress);
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
  // Only this thread reports (parallel.h).
  JobPhase reported = JobPhase::None;
  if (progress_) {
    progress = [this, &reported](uint64_t done, uint64_t total) {
      const JobPhase phase = control_->phase();
      auto* report = new ProgressReport{static_cast<double>(done), static_cast<double>(total), phase};
      // A stale level may be dropped, a phase change must not be: the caller may be about to
      // decide on a cancel by it. It waits for the queue instead, which the JS thread empties.
      const napi_status status = phase != reported ? progress_->BlockingCall(report, call_progress)
                                                   : progress_->NonBlockingCall(report, call_progress);
      if (status != napi_ok) delete report;
      else reported = phase;
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

void JobWorker::report_end() {
  if (on_progress_.IsEmpty()) return;
  Napi::Env env = Env();
  on_progress_.Call({Napi::Number::New(env, static_cast<double>(control_->done())), Napi::Number::New(env, static_cast<double>(control_->total())),
                     phase_value(env, control_->phase())});
}

void JobWorker::OnOK() {
  Napi::Env env = Env();
  try {
    report_end();
  } catch (const Napi::Error&) {
    // A progress callback's failure is its caller's to handle (the TypeScript wrapper does).
  }
  try {
    deferred_.Resolve(result(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  }
}

void JobWorker::OnError(const Napi::Error& e) {
  Napi::Env env = Env();
  try {
    report_end();
  } catch (const Napi::Error&) {
    // The job's own failure is what the caller must learn.
  }
  deferred_.Reject(error_ ? to_js_error(env, *error_).Value() : internal_error(env, e.Message()).Value());
}

}  // namespace blocksnap::js
