#pragma once

#include <napi.h>

namespace blocksnap::js {

// socketPeer(fd) → { uid, gid, pid, hungUp }: who is at the other end of a connected Unix socket
// (SO_PEERCRED, fixed when the peer connected), and whether it has closed its end for good.
// hungUp tells a peer that is gone from one that only shut down its sending side: both look like
// an end of stream to a reader, but only a close sets the socket's shutdown mask fully (POLLHUP).
Napi::Value socket_peer(const Napi::CallbackInfo& info);

}  // namespace blocksnap::js
