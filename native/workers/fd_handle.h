#pragma once

#include <napi.h>

#include "io/unique_fd.h"

namespace blocksnap::js {

// Hands a descriptor whose only purpose is to be held (a lock) to JS as { release(): void }.
// release() closes it (a second call does nothing); a handle garbage-collected unreleased closes
// it too, so a lock cannot outlive every reference to it.
Napi::Object fd_handle(Napi::Env env, UniqueFd fd);

}  // namespace blocksnap::js
