// What every async call shares: a promise, a cancel function, progress reports, error mapping.
//
// A call returns { promise, cancel }. The job runs on a libuv pool thread, which starts the
// job's own worker threads and then only waits, reporting progress every 200 ms through a
// thread-safe function; Execute() never touches N-API. The progress function is released as
// soon as the job ends so a finished job never keeps the event loop (and the process) alive.
// Progress calls queued before the end may arrive after the promise settles; the TypeScript
// wrapper drops them. So the end is reported once more, on the JS thread just before the promise
// settles, with where the job stopped: a job's last phase is known however it ended.
#pragma once

#include <napi.h>

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "core/parallel.h"

namespace blocksnap::js {

class JobWorker : public Napi::AsyncWorker {
 public:
  // Queues the job and returns { promise, cancel }. The worker deletes itself when done.
  Napi::Object start();

 protected:
  JobWorker(Napi::Env env, const char* name, Napi::Function on_progress);
  ~JobWorker() override;

  // Runs on the pool thread. Throws blocksnap::Error.
  virtual void run(JobControl& control, const ProgressFn& progress) = 0;
  // Runs on the JS thread after run() succeeded.
  virtual Napi::Value result(Napi::Env env) = 0;

 private:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;
  void release_progress();
  void report_end();

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<JobControl> control_ = std::make_shared<JobControl>();
  std::optional<Napi::ThreadSafeFunction> progress_;
  Napi::FunctionReference on_progress_;
  std::optional<Error> error_;
};

// A job that is one call on the pool thread and one conversion of its result on the JS thread.
// Both are callables, so a job owning what it works on (a moved params struct, a frozen volume
// source) needs no class of its own.
template <typename Run, typename ToJs>
class CallJob final : public JobWorker {
 public:
  using Result = std::invoke_result_t<Run&, JobControl&, const ProgressFn&>;

  CallJob(Napi::Env env, const char* name, Napi::Function on_progress, Run run, ToJs to_js)
      : JobWorker(env, name, on_progress), run_(std::move(run)), to_js_(std::move(to_js)) {}

 private:
  void run(JobControl& control, const ProgressFn& progress) override { result_.emplace(run_(control, progress)); }
  Napi::Value result(Napi::Env env) override { return to_js_(env, *result_); }

  Run run_;
  ToJs to_js_;
  std::optional<Result> result_;
};

// A phase as progress reports carry it: 'comparing', 'writing', or undefined for None.
Napi::Value phase_value(Napi::Env env, JobPhase phase);

// Queues run(control, progress) and settles the promise with to_js(env, result).
template <typename Run, typename ToJs>
Napi::Object start_job(Napi::Env env, const char* name, Napi::Function on_progress, Run run, ToJs to_js) {
  return (new CallJob<Run, ToJs>(env, name, on_progress, std::move(run), std::move(to_js)))->start();
}

}  // namespace blocksnap::js
