#include "workers/blocking_js_call.h"

#include <condition_variable>
#include <memory>
#include <mutex>

namespace blocksnap::js {

namespace {

struct State {
  std::mutex mutex;
  std::condition_variable changed;
  bool alive = true;  // false once Node finalized the function: nothing may touch it then
  Napi::ThreadSafeFunction tsfn;
};

// What the JS thread answered one call.
struct Answer {
  bool done = false;
  bool go = false;
};

class Caller {
 public:
  explicit Caller(std::shared_ptr<State> state) : s_(std::move(state)) {}
  Caller(const Caller&) = delete;  // one release per function
  Caller& operator=(const Caller&) = delete;
  ~Caller() {
    std::lock_guard lock(s_->mutex);
    if (s_->alive) s_->tsfn.Release();
  }

  bool call() const {
    auto answer = std::make_shared<Answer>();
    std::unique_lock lock(s_->mutex);
    if (!s_->alive) return false;
    // Queued under the lock, so that the finalizer cannot run in between; the queue is
    // unbounded, so this never waits for the JS thread, which takes the lock to answer.
    const napi_status queued = s_->tsfn.BlockingCall([state = s_, answer](Napi::Env env, Napi::Function fn) {
      bool go = false;
      if (env != nullptr && !fn.IsEmpty()) {
        try {
          go = fn.Call({}).StrictEquals(Napi::Boolean::New(env, true));
        } catch (const Napi::Error&) {
          // The wrapper's function does not throw: it keeps its error and returns false.
        }
      }
      std::lock_guard answered(state->mutex);
      answer->done = true;
      answer->go = go;
      state->changed.notify_all();
    });
    if (queued != napi_ok) return false;
    s_->changed.wait(lock, [&] { return answer->done || !s_->alive; });
    return answer->done && answer->go;
  }

 private:
  std::shared_ptr<State> s_;
};

}  // namespace

std::function<bool()> blocking_js_call(Napi::Env env, Napi::Function fn, const char* name) {
  auto state = std::make_shared<State>();
  // Torn down with a call queued, Node drops the call without running it: the finalizer wakes
  // the thread waiting for it.
  state->tsfn = Napi::ThreadSafeFunction::New(env, fn, name, 0, 1, [state](Napi::Env) {
    std::lock_guard lock(state->mutex);
    state->alive = false;
    state->changed.notify_all();
  });
  auto caller = std::make_shared<Caller>(state);
  return [caller] { return caller->call(); };
}

}  // namespace blocksnap::js
