#include "workers/hash_buffer.h"

#include "core/digest.h"

namespace blocksnap::js {

Napi::Value hash_buffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, "data must be a Buffer");
  auto data = info[0].As<Napi::Uint8Array>();
  const Digest d = sha256(data.Data(), data.ByteLength());
  return Napi::Buffer<uint8_t>::Copy(env, d.data(), d.size());
}

}  // namespace blocksnap::js
