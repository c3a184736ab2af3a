#include "workers/args.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <climits>
#include <cmath>

namespace blocksnap::js {

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;

[[noreturn]] void type_error(Napi::Env env, const char* name, const char* expected) {
  throw Napi::TypeError::New(env, std::string("options.") + name + " must be " + expected);
}

}  // namespace

Options::Options(const Napi::CallbackInfo& info) : env_(info.Env()) {
  if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray() || info[0].IsFunction())
    throw Napi::TypeError::New(env_, "the first argument must be an options object");
  object_ = info[0].As<Napi::Object>();
}

Napi::Value Options::get(const char* name) const { return object_.Get(name); }

std::vector<Options> Options::objects(const char* name) const {
  Napi::Value v = get(name);
  std::vector<Options> out;
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) type_error(env_, name, "an array of objects");
  Napi::Array a = v.As<Napi::Array>();
  const uint32_t n = a.Length();
  out.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject() || e.IsArray() || e.IsFunction()) type_error(env_, name, "an array of objects");
    out.push_back(Options(env_, e.As<Napi::Object>()));
  }
  return out;
}

void Options::invalid(const char* name, const std::string& what) const {
  Napi::Error err = Napi::RangeError::New(env_, std::string("options.") + name + " " + what);
  err.Set("code", Napi::String::New(env_, "InvalidArgument"));
  throw err;
}

bool Options::has(const char* name) const { return !get(name).IsUndefined(); }

std::string Options::string(const char* name) const {
  Napi::Value v = get(name);
  if (!v.IsString()) type_error(env_, name, "a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.empty()) invalid(name, "must not be empty");
  if (s.find('\0') != std::string::npos) invalid(name, "must not contain NUL characters");
  return s;
}

uint64_t Options::integer(const char* name) const {
  Napi::Value v = get(name);
  if (!v.IsNumber()) type_error(env_, name, "a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < 0 || d > kMaxSafeInteger || std::floor(d) != d)
    invalid(name, "must be a non-negative safe integer");
  return static_cast<uint64_t>(d);
}

std::shared_ptr<const UniqueFd> Options::directory(const char* name) const {
  if (!has(name)) return nullptr;
  const uint64_t n = integer(name);
  if (n > static_cast<uint64_t>(INT32_MAX)) invalid(name, "must be a file descriptor");
  UniqueFd fd(::fcntl(static_cast<int>(n), F_DUPFD_CLOEXEC, 0));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISDIR(st.st_mode)) invalid(name, "must be an open directory descriptor");
  return std::make_shared<const UniqueFd>(std::move(fd));
}

std::optional<FileOwner> Options::owner() const {
  if (!has("ownerUid") && !has("ownerGid")) return std::nullopt;
  const uint64_t uid = integer("ownerUid");
  const uint64_t gid = integer("ownerGid");
  // (uid_t)-1 means "leave unchanged" to fchown, which is not what a caller naming an owner wants.
  if (uid >= UINT32_MAX) invalid("ownerUid", "must be a uid below 4294967295");
  if (gid >= UINT32_MAX) invalid("ownerGid", "must be a gid below 4294967295");
  return FileOwner{static_cast<uid_t>(uid), static_cast<gid_t>(gid)};
}

namespace {

std::optional<FileIdentity> identity_of(Napi::Env env, Napi::Value v, const char* name) {
  if (v.IsUndefined()) return std::nullopt;
  if (!v.IsObject()) type_error(env, name, "an object { dev, ino }");
  const Napi::Object id = v.As<Napi::Object>();
  FileIdentity out;
  for (auto [key, field] : {std::pair{"dev", &out.dev}, std::pair{"ino", &out.ino}}) {
    const Napi::Value n = id.Get(key);
    if (!n.IsBigInt()) type_error(env, name, "an object of two bigints { dev, ino }");
    bool lossless = false;
    *field = n.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) type_error(env, name, "an object of two unsigned 64-bit bigints { dev, ino }");
  }
  return out;
}

}  // namespace

std::optional<FileIdentity> Options::identity(const char* name) const { return identity_of(env_, get(name), name); }

std::optional<FileIdentity> identity_argument(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index) return std::nullopt;
  return identity_of(info.Env(), info[index], "expected");
}

bool Options::boolean(const char* name, bool fallback) const {
  Napi::Value v = get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) type_error(env_, name, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

unsigned Options::threads() const {
  if (get("threads").IsUndefined()) return 0;
  uint64_t n = integer("threads");
  if (n < 1 || n > 1024) invalid("threads", "must be between 1 and 1024");
  return static_cast<unsigned>(n);
}

std::vector<uint8_t> Options::bytes(const char* name, bool required) const {
  Napi::Value v = get(name);
  if (v.IsUndefined() && !required) return {};
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    type_error(env_, name, "a Buffer");
  auto a = v.As<Napi::Uint8Array>();
  return std::vector<uint8_t>(a.Data(), a.Data() + a.ByteLength());
}

HeldBytes Options::held_bytes(const char* name, bool required) const {
  Napi::Value v = get(name);
  if (v.IsUndefined() && !required) return {};
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    type_error(env_, name, "a Buffer");
  auto a = v.As<Napi::Uint8Array>();
  auto keeper = std::make_shared<Napi::Reference<Napi::Uint8Array>>(Napi::Persistent(a));
  return HeldBytes(a.Data(), a.ByteLength(), std::move(keeper));
}

std::string path_argument(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "path must be a string");
  return info[0].As<Napi::String>().Utf8Value();
}

Napi::Function Options::function(const char* name) const {
  Napi::Value v = get(name);
  if (v.IsUndefined()) return Napi::Function();
  if (!v.IsFunction()) type_error(env_, name, "a function");
  return v.As<Napi::Function>();
}

std::vector<CheckedBacking> checked_backing_chain(const Options& o) {
  std::vector<CheckedBacking> chain;
  const std::vector<Options> links = o.objects("backingChain");
  if (links.size() > kMaxBackingDepth) o.invalid("backingChain", "must hold at most " + std::to_string(kMaxBackingDepth) + " backing files");
  for (const Options& l : links) {
    CheckedBacking c{l.string("path"), l.string("realPath"), ImageFormat::Raw, l.identity("id")};
    if (c.path[0] != '/' || c.real[0] != '/') o.invalid("backingChain", "paths must be absolute");
    const std::string f = l.string("format");
    if (f == "qcow2") c.format = ImageFormat::Qcow2;
    else if (f != "raw") o.invalid("backingChain", "formats must be 'raw' or 'qcow2'");
    chain.push_back(std::move(c));
  }
  return chain;
}

}  // namespace blocksnap::js
