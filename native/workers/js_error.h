// The only place a native error becomes a JS one: message plus the properties src/native/index.ts
// turns into BlocksnapError details (code, errno, syscall, path, blockIndex, digest), and a failed
// scan's writtenDigests, which it keeps off the details (writtenDigestsOf).
#pragma once

#include <napi.h>

#include "core/error.h"

namespace blocksnap::js {

Napi::Error to_js_error(Napi::Env env, const Error& e);

// A JS error with code 'Internal' for failures that are not blocksnap::Error (bad_alloc, ...).
Napi::Error internal_error(Napi::Env env, const std::string& message);

}  // namespace blocksnap::js
