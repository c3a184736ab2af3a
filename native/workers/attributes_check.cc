#include "workers/attributes_check.h"

#include "io/file_attributes.h"
#include "io/inode_flags.h"
#include "workers/args.h"
#include "workers/js_error.h"

namespace blocksnap::js {

Napi::Value check_attributes_copyable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = path_argument(info);
  if (info.Length() < 2 || !info[1].IsString()) throw Napi::TypeError::New(env, "the second argument (newImagePath) must be a string");
  const std::string new_image_path = info[1].As<Napi::String>().Utf8Value();
  try {
    blocksnap::check_attributes_copyable(path, new_image_path);
    return env.Undefined();
  } catch (const Error& e) {
    throw to_js_error(env, e);
  }
}

Napi::Value inode_flags(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = path_argument(info);
  try {
    const InodeFlags flags = blocksnap::inode_flags(path);
    Napi::Object out = Napi::Object::New(env);
    out.Set("appendOnly", Napi::Boolean::New(env, flags.append_only));
    out.Set("immutable", Napi::Boolean::New(env, flags.immutable));
    return out;
  } catch (const Error& e) {
    throw to_js_error(env, e);
  }
}

Napi::Value access_acl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = path_argument(info);
  try {
    const std::optional<std::string> acl = blocksnap::access_acl(path);
    if (!acl) return env.Null();
    return Napi::Buffer<char>::Copy(env, acl->data(), acl->size());
  } catch (const Error& e) {
    throw to_js_error(env, e);
  }
}

}  // namespace blocksnap::js
