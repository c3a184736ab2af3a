#include "workers/peer_socket.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "core/error.h"
#include "workers/js_error.h"

namespace blocksnap::js {

Napi::Value socket_peer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "socketPeer needs a descriptor");
  const int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) throw to_js_error(env, Error::system(errno, "getsockopt(SO_PEERCRED)", "socket"));
  // A zero timeout: this only reads the socket's state, it never waits for the peer.
  struct pollfd p { fd, POLLRDHUP, 0 };
  int r;
  do r = ::poll(&p, 1, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0) throw to_js_error(env, Error::system(errno, "poll", "socket"));
  Napi::Object o = Napi::Object::New(env);
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("hungUp", Napi::Boolean::New(env, (p.revents & (POLLHUP | POLLERR)) != 0));
  return o;
}

}  // namespace blocksnap::js
