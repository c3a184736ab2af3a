// A JS function that a job's thread calls and waits for, for a step the job may take only once
// the JS side has done something first: a rollback writes to its image only once its journal
// records that it does.
#pragma once

#include <napi.h>

#include <functional>

namespace blocksnap::js {

// On the JS thread: a callable for the job's thread that calls `fn` with no arguments on the JS
// thread and waits until it has returned. The callable returns true when `fn` returned true;
// false when it returned anything else or threw (the caller's wrapper keeps its own error), and
// when Node tore the function down first (at the environment's teardown), since then it never
// runs. The function is released when the last copy of the callable goes, which keeps the event
// loop alive until then.
std::function<bool()> blocking_js_call(Napi::Env env, Napi::Function fn, const char* name);

}  // namespace blocksnap::js
