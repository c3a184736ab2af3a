#include "workers/image_lock.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "core/error.h"
#include "core/image_file.h"
#include "io/qemu_lock.h"
#include "workers/args.h"
#include "workers/fd_handle.h"
#include "workers/js_error.h"

namespace blocksnap::js {

namespace {

Napi::Array perm_names(Napi::Env env, uint32_t mask) {
  Napi::Array a = Napi::Array::New(env);
  uint32_t n = 0;
  for (unsigned bit = 0; bit < kQemuPermCount; ++bit)
    if (mask >> bit & 1) a.Set(n++, qemu_perm_name(bit));
  return a;
}

// A name inside the held directory: one component, so that nothing is resolved beyond it.
std::string entry_name(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), "a name must be a string");
  std::string name = info[i].As<Napi::String>().Utf8Value();
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || name.find('\0') != std::string::npos) {
    Napi::Error err = Napi::RangeError::New(info.Env(), "a name must be one path component, got " + name);
    err.Set("code", Napi::String::New(info.Env(), "InvalidArgument"));
    throw err;
  }
  return name;
}

}  // namespace

Napi::Value open_image_dir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = path_argument(info);
  std::shared_ptr<UniqueFd> dir;
  try {
    dir = std::make_shared<UniqueFd>(blocksnap::open_image_dir(path));
  } catch (const Error& e) {
    throw to_js_error(env, e);
  }
  const auto where = [path](const std::string& name) { return path == "/" ? "/" + name : path + "/" + name; };
  Napi::Object h = Napi::Object::New(env);
  h.Set("fd", Napi::Number::New(env, dir->get()));
  h.Set("link", Napi::Function::New(env, [dir, where](const Napi::CallbackInfo& info) {
    const std::string from = entry_name(info, 0), to = entry_name(info, 1);
    if (::linkat(dir->get(), from.c_str(), dir->get(), to.c_str(), 0) != 0) throw to_js_error(info.Env(), Error::image(errno, "link", where(to)));
  }, "link"));
  h.Set("rename", Napi::Function::New(env, [dir, where](const Napi::CallbackInfo& info) {
    const std::string from = entry_name(info, 0), to = entry_name(info, 1);
    const bool replace = info.Length() > 2 && info[2].ToBoolean();
    int r = ::renameat2(dir->get(), from.c_str(), dir->get(), to.c_str(), replace ? 0 : RENAME_NOREPLACE);
    if (r != 0 && errno == EINVAL && !replace) {
      // A filesystem without RENAME_NOREPLACE: check the name, then rename (a race with another
      // writer of this directory remains possible there, and only there).
      struct stat st;
      if (::fstatat(dir->get(), to.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) errno = EEXIST;
      else if (errno != ENOENT) throw to_js_error(info.Env(), Error::image(errno, "fstatat", where(to)));
      else r = ::renameat(dir->get(), from.c_str(), dir->get(), to.c_str());
    }
    if (r != 0) throw to_js_error(info.Env(), Error::image(errno, "rename", where(to)));
  }, "rename"));
  h.Set("unlink", Napi::Function::New(env, [dir, where](const Napi::CallbackInfo& info) -> Napi::Value {
    const std::string name = entry_name(info, 0);
    if (::unlinkat(dir->get(), name.c_str(), 0) == 0) return Napi::Boolean::New(info.Env(), true);
    if (errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
    throw to_js_error(info.Env(), Error::system(errno, "unlink", where(name)));
  }, "unlink"));
  // Removes `name` only if it is a regular file owned by one of `uids`: a leftover the daemon
  // itself made. Anything else under that name (a directory, a symlink, a file of another user
  // planted in a directory they may write) is left where it is. Stat and unlink both go through
  // the held descriptor; in a sticky directory nobody but the owner can swap the entry in between.
  h.Set("removeOwnFile", Napi::Function::New(env, [dir, where](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env env = info.Env();
    const std::string name = entry_name(info, 0);
    if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "uids must be an array of numbers");
    const Napi::Array uids = info[1].As<Napi::Array>();
    struct stat st;
    if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return Napi::String::New(env, "absent");
      throw to_js_error(env, Error::system(errno, "stat", where(name)));
    }
    bool ours = false;
    for (uint32_t i = 0; i < uids.Length(); ++i) {
      const Napi::Value v = uids.Get(i);
      if (v.IsNumber() && static_cast<uid_t>(v.As<Napi::Number>().Uint32Value()) == st.st_uid) ours = true;
    }
    if (!S_ISREG(st.st_mode) || !ours) return Napi::String::New(env, "kept");
    if (::unlinkat(dir->get(), name.c_str(), 0) == 0) return Napi::String::New(env, "removed");
    if (errno == ENOENT) return Napi::String::New(env, "absent");
    throw to_js_error(env, Error::system(errno, "unlink", where(name)));
  }, "removeOwnFile"));
  h.Set("createFile", Napi::Function::New(env, [dir, where](const Napi::CallbackInfo& info) -> Napi::Value {
    const std::string name = entry_name(info, 0);
    try {
      bool nameless = false;
      return Napi::Number::New(info.Env(), create_in(dir->get(), name, where(name), nameless).release());
    } catch (const Error& e) {
      throw to_js_error(info.Env(), e);
    }
  }, "createFile"));
  h.Set("linkFile", Napi::Function::New(env, [dir, where](const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "fd must be a number");
    const int fd = info[0].As<Napi::Number>().Int32Value();
    const std::string name = entry_name(info, 1);
    struct stat st;
    try {
      if (::fstat(fd, &st) != 0) throw Error::system(errno, "fstat", where(name));
      // A file with a link count was created under its name (no O_TMPFILE there).
      if (st.st_nlink == 0) link_nameless(fd, dir->get(), name, where(name));
    } catch (const Error& e) {
      throw to_js_error(info.Env(), e);
    }
  }, "linkFile"));
  h.Set("openFile", Napi::Function::New(env, [dir, where](const Napi::CallbackInfo& info) -> Napi::Value {
    const std::string name = entry_name(info, 0);
    try {
      ImageFile f = open_image_in(dir->get(), name, where(name));
      return Napi::Number::New(info.Env(), f.fd.release());
    } catch (const Error& e) {
      throw to_js_error(info.Env(), e);
    }
  }, "openFile"));
  h.Set("sync", Napi::Function::New(env, [dir, path](const Napi::CallbackInfo& info) {
    if (::fsync(dir->get()) != 0) throw to_js_error(info.Env(), Error::system(errno, "fsync", path));
  }, "sync"));
  h.Set("release", Napi::Function::New(env, [dir](const Napi::CallbackInfo&) { dir->reset(); }, "release"));
  return h;
}

Napi::Value probe_image_locks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = path_argument(info);
  try {
    const QemuLocks l = probe_qemu_locks(path);
    Napi::Object o = Napi::Object::New(env);
    o.Set("held", perm_names(env, l.held));
    o.Set("notShared", perm_names(env, l.not_shared));
    return o;
  } catch (const Error& e) {
    throw to_js_error(env, e);
  }
}

Napi::Value hold_image_locks(const Napi::CallbackInfo& info) {
  const std::string path = path_argument(info);
  try {
    return fd_handle(info.Env(), open_and_hold_qemu_locks(path));
  } catch (const Error& e) {
    throw to_js_error(info.Env(), e);
  }
}

}  // namespace blocksnap::js
