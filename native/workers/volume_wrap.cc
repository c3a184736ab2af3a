#include "workers/volume_wrap.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "core/digest.h"
#include "core/error.h"
#include "core/held_bytes.h"
#include "volume/cow_volume.h"
#include "volume/written_count.h"
#include "workers/args.h"
#include "workers/js_error.h"
#include "workers/volume_jobs.h"
#include "workers/volume_task.h"

namespace blocksnap::js {

namespace {

// The largest read or write one call may ask for: what an NBD request can carry.
constexpr uint64_t kMaxIo = 32ull << 20;
// The most extents one call returns: far more than an NBD reply carries (1024).
constexpr uint64_t kMaxExtentsPerCall = 1ull << 20;

uint64_t arg_integer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(env, std::string(name) + " must be a number");
  const double d = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < 0 || d > 9007199254740991.0 || std::floor(d) != d) {
    Napi::Error err = Napi::RangeError::New(env, std::string(name) + " must be a non-negative safe integer");
    err.Set("code", Napi::String::New(env, "InvalidArgument"));
    throw err;
  }
  return static_cast<uint64_t>(d);
}

bool arg_boolean(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsBoolean()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

LayerFiles layer_files(Napi::Env env, Napi::Value v) {
  if (!v.IsObject()) throw Napi::TypeError::New(env, "a layer must be an object { dataPath, mapPath }");
  Napi::Object o = v.As<Napi::Object>();
  auto path = [&](const char* name) {
    Napi::Value p = o.Get(name);
    if (!p.IsString()) throw Napi::TypeError::New(env, std::string("layer.") + name + " must be a string");
    std::string s = p.As<Napi::String>().Utf8Value();
    if (s.empty() || s.find('\0') != std::string::npos) throw Napi::TypeError::New(env, std::string("layer.") + name + " must be a non-empty path");
    return s;
  };
  return LayerFiles{path("dataPath"), path("mapPath")};
}

// Hands what a volume's verifier thread finds damaged to a JS function (onVerifyDamage) on the JS
// thread, as the error a read would have thrown. The thread-safe function is released when the
// volume lets go of the returned callback (CowVolume::close, or its end); Node may finalize it
// first, at the environment's teardown, after which nothing may touch it: `alive` says which.
std::function<void(const Error&)> verify_damage_sink(Napi::Env env, Napi::Function fn) {
  struct State {
    std::mutex mutex;
    bool alive = true;
    Napi::ThreadSafeFunction tsfn;
  };
  struct Sink {
    explicit Sink(std::shared_ptr<State> state) : s(std::move(state)) {}
    Sink(const Sink&) = delete;  // one release per function
    Sink& operator=(const Sink&) = delete;
    std::shared_ptr<State> s;
    ~Sink() {
      std::lock_guard lock(s->mutex);
      if (s->alive) s->tsfn.Release();
    }
    void report(const Error& e) const {
      auto copy = std::make_unique<Error>(e);
      std::lock_guard lock(s->mutex);
      if (!s->alive) return;
      const auto deliver = [](Napi::Env env, Napi::Function fn, Error* found) {
        std::unique_ptr<Error> owned(found);
        if (env == nullptr || fn.IsEmpty()) return;  // torn down with reports queued
        try {
          fn.Call({to_js_error(env, *owned).Value()});
        } catch (const Napi::Error&) {
          // The wrapper's function does not throw; a report is best effort anyway.
        }
      };
      if (s->tsfn.NonBlockingCall(copy.get(), deliver) == napi_ok) copy.release();
    }
  };
  auto state = std::make_shared<State>();
  state->tsfn = Napi::ThreadSafeFunction::New(env, fn, "blocksnap.volume.verifyDamage", 0, 1, [state](Napi::Env) {
    std::lock_guard lock(state->mutex);
    state->alive = false;
  });
  state->tsfn.Unref(env);  // an open volume does not keep the process alive
  auto sink = std::make_shared<Sink>(state);
  return [sink](const Error& e) { sink->report(e); };
}

template <typename F>
auto or_js_error(Napi::Env env, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    throw to_js_error(env, e);
  } catch (const std::logic_error& e) {
    throw internal_error(env, e.what());
  }
}

class VolumeWrap : public Napi::ObjectWrap<VolumeWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Volume",
                       {StaticMethod<&VolumeWrap::open>("open"),
                        InstanceMethod<&VolumeWrap::size_bytes>("sizeBytes"),
                        InstanceMethod<&VolumeWrap::layer_count>("layerCount"),
                        InstanceMethod<&VolumeWrap::read_into>("readInto"),
                        InstanceMethod<&VolumeWrap::write>("write"),
                        InstanceMethod<&VolumeWrap::write_batch>("writeBatch"),
                        InstanceMethod<&VolumeWrap::read_cached>("readCached"),
                        InstanceMethod<&VolumeWrap::write_copies_up>("writeCopiesUp"),
                        InstanceMethod<&VolumeWrap::zero>("zero"),
                        InstanceMethod<&VolumeWrap::flush>("flush"),
                        InstanceMethod<&VolumeWrap::extents>("extents"),
                        InstanceMethod<&VolumeWrap::push_layer>("pushLayer"),
                        InstanceMethod<&VolumeWrap::pop_empty_top>("popEmptyTop"),
                        InstanceMethod<&VolumeWrap::dirty_blocks>("dirtyBlocks"),
                        InstanceMethod<&VolumeWrap::scan_blocks>("scanBlocks"),
                        InstanceMethod<&VolumeWrap::flatten_to>("flattenTo"),
                        InstanceMethod<&VolumeWrap::rebase>("rebase"),
                        InstanceMethod<&VolumeWrap::store_bytes_read>("storeBytesRead"),
                        InstanceMethod<&VolumeWrap::written_bytes>("writtenBytes"),
                        InstanceMethod<&VolumeWrap::close>("close")});
  }

  // new Volume(spec): opens on the calling thread. Volume.open(spec) (below) opens on the pool
  // and makes the object with the volume it opened.
  explicit VolumeWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VolumeWrap>(info) {
    if (adopting_ != nullptr) {
      volume_ = std::move(*adopting_);
      return;
    }
    VolumeSpec spec = parse_spec(info);
    spec.base_digests = Options(info).held_bytes("baseDigests", true);
    volume_ = or_js_error(info.Env(), [&] { return std::make_shared<CowVolume>(spec); });
  }

  // Volume.open(spec) → Promise<Volume>: the open on the pool. It reads every layer's map and
  // copies the base view (32 bytes per block: 120 MiB for 15 TiB), which on the JS thread held
  // every export and client of the daemon for seconds. The view is lent, not copied here
  // (core/held_bytes.h): the caller leaves it unchanged until the promise settles.
  static Napi::Value open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info.This().IsFunction()) throw Napi::TypeError::New(env, "open must be called as Volume.open");
    VolumeSpec spec = parse_spec(info);
    spec.base_digests = Options(info).held_bytes("baseDigests", true);
    auto ctor = std::make_shared<Napi::FunctionReference>(Napi::Persistent(info.This().As<Napi::Function>()));
    auto opened = std::make_shared<std::shared_ptr<CowVolume>>();
    return queue_volume_task(
        env, "blocksnap.volume.open", [spec, opened] { *opened = std::make_shared<CowVolume>(spec); },
        [ctor, opened](Napi::Env) -> Napi::Value {
          adopting_ = opened.get();
          struct Reset {
            ~Reset() { adopting_ = nullptr; }
          } reset;
          return ctor->Value().New({});
        });
  }

 private:
  // The spec of new Volume(spec) and Volume.open(spec), but for baseDigests.
  static VolumeSpec parse_spec(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Options o(info);
    VolumeSpec spec;
    spec.store_dir = o.string("storeDir");
    if (o.has("granuleDir")) spec.granule_dir = o.string("granuleDir");
    spec.block_size = o.integer("blockSize");
    spec.size_bytes = o.integer("sizeBytes");
    spec.writable = o.boolean("writable", false);
    spec.background_verify = o.boolean("backgroundVerify", false);
    if (Napi::Function on_damage = o.function("onVerifyDamage"); !on_damage.IsEmpty() && spec.background_verify)
      spec.on_verify_damage = verify_damage_sink(env, on_damage);
    Napi::Value layers = info[0].As<Napi::Object>().Get("layers");
    if (!layers.IsArray()) throw Napi::TypeError::New(env, "options.layers must be an array");
    Napi::Array a = layers.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) spec.layers.push_back(layer_files(env, a.Get(i)));
    return spec;
  }

  // The volume Volume.open opened, for the constructor it calls (on the JS thread).
  static inline thread_local std::shared_ptr<CowVolume>* adopting_ = nullptr;

  Napi::Value size_bytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(volume_->size())); }

  Napi::Value layer_count(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(or_js_error(info.Env(), [&] { return volume_->layer_count(); })));
  }

  // readInto(offset, length, target, at): fills target[at, at + length) on the pool thread. The
  // caller owns the Buffer (the NBD server reuses a pool of them: a fresh Buffer per reply made GC
  // a third of the daemon's time); the task holds a reference until it resolves, so the memory
  // stays put, and JS must not touch that range before the promise settles.
  Napi::Value read_into(const Napi::CallbackInfo& info) {
    const ReadArgs r = read_args(info);
    auto ref = std::make_shared<Napi::Reference<Napi::Uint8Array>>(Napi::Persistent(r.target));
    auto volume = volume_;
    return queue_volume_task(
        info.Env(), "blocksnap.volume.read", [volume, dst = r.dst, offset = r.offset, len = r.len] { volume->read(offset, len, dst); },
        [ref](Napi::Env env) -> Napi::Value { return env.Undefined(); });
  }

  // readCached(offset, length, target, at): read_into on the JS thread when the page cache holds
  // every byte and the blocks are verified (CowVolume::read_cached); true when it did. A cached
  // 4 KiB read then costs one preadv2 instead of two thread hand-offs. False: nothing to rely on
  // in target, the caller goes through readInto.
  Napi::Value read_cached(const Napi::CallbackInfo& info) {
    const ReadArgs r = read_args(info);
    return Napi::Boolean::New(info.Env(), volume_->read_cached(r.offset, r.len, r.dst));
  }

  // The arguments (offset, length, target, at) of readInto and readCached, checked.
  struct ReadArgs {
    uint64_t offset;
    uint64_t len;
    Napi::Uint8Array target;
    uint8_t* dst;
  };
  static ReadArgs read_args(const Napi::CallbackInfo& info) {
    const uint64_t offset = arg_integer(info, 0, "offset");
    const uint64_t len = arg_integer(info, 1, "length");
    if (len > kMaxIo) throw Napi::RangeError::New(info.Env(), "length must be at most 32 MiB");
    if (info.Length() < 3 || !info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(info.Env(), "target must be a Buffer");
    auto target = info[2].As<Napi::Uint8Array>();
    const uint64_t at = arg_integer(info, 3, "at");
    if (at > target.ByteLength() || len > target.ByteLength() - at)
      throw Napi::RangeError::New(info.Env(), "target[at, at + length) must lie inside the Buffer");
    return {offset, len, target, target.Data() + at};
  }

  Napi::Value write(const Napi::CallbackInfo& info) {
    const uint64_t offset = arg_integer(info, 0, "offset");
    if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(info.Env(), "data must be a Buffer");
    auto a = info[1].As<Napi::Uint8Array>();
    if (a.ByteLength() > kMaxIo) throw Napi::RangeError::New(info.Env(), "data must be at most 32 MiB");
    const bool fua = arg_boolean(info, 2, "fua");
    // A copy: JS may reuse the buffer as soon as this call returns.
    auto data = std::make_shared<std::vector<uint8_t>>(a.Data(), a.Data() + a.ByteLength());
    auto volume = volume_;
    return queue_volume_task(info.Env(), "blocksnap.volume.write",
                             [volume, data, offset, fua] { volume->write(offset, data->data(), data->size(), fua); });
  }

  // writeBatch(offsets, buffers): several small writes in one pool task, so that a client with
  // many requests in flight costs one thread hand-off per batch rather than per write (on a VM
  // host each hand-off may wake an idle vCPU, which costs more than a 4 KiB pwrite). Each write
  // keeps its own outcome (queue_volume_batch).
  Napi::Value write_batch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto offsets = batch_offsets(info, 2);
    auto buffers = info[1].As<Napi::Array>();
    struct Piece {
      uint64_t offset;
      size_t at;
      size_t len;
    };
    auto pieces = std::make_shared<std::vector<Piece>>();
    uint64_t total = 0;
    for (uint32_t i = 0; i < buffers.Length(); ++i) {
      const uint64_t len = batch_buffer(env, buffers.Get(i), "buffers").ByteLength();
      pieces->push_back({offsets[i], static_cast<size_t>(total), static_cast<size_t>(len)});
      total += len;
      if (total > kMaxIo) throw Napi::RangeError::New(env, "a batch must carry at most 32 MiB");
    }
    // A copy, as write() makes: JS may reuse the buffers as soon as this call returns.
    auto data = std::make_shared<std::vector<uint8_t>>(total);
    for (uint32_t i = 0; i < buffers.Length(); ++i) {
      auto a = buffers.Get(i).As<Napi::Uint8Array>();
      if (a.ByteLength() > 0) std::memcpy(data->data() + (*pieces)[i].at, a.Data(), a.ByteLength());
    }
    auto volume = volume_;
    return queue_volume_batch(env, "blocksnap.volume.writeBatch", pieces->size(), [volume, pieces, data](size_t i) {
      const Piece& p = (*pieces)[i];
      volume->write(p.offset, data->data() + p.at, p.len, false);
    });
  }

  // The offsets of a batch call; every other argument up to `arrays` is an array as long.
  static std::vector<uint64_t> batch_offsets(const Napi::CallbackInfo& info, size_t arrays) {
    Napi::Env env = info.Env();
    for (size_t i = 0; i < arrays; ++i)
      if (info.Length() <= i || !info[i].IsArray()) throw Napi::TypeError::New(env, "the arguments of a batch must be arrays");
    auto offsets = info[0].As<Napi::Array>();
    for (size_t i = 1; i < arrays; ++i)
      if (info[i].As<Napi::Array>().Length() != offsets.Length()) throw Napi::RangeError::New(env, "the arrays of a batch must have the same length");
    std::vector<uint64_t> out;
    out.reserve(offsets.Length());
    for (uint32_t i = 0; i < offsets.Length(); ++i) out.push_back(batch_integer(env, offsets.Get(i), "offsets"));
    return out;
  }

  static uint64_t batch_integer(Napi::Env env, Napi::Value v, const char* name) {
    if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(name) + " must be numbers");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d < 0 || d > 9007199254740991.0 || std::floor(d) != d)
      throw Napi::RangeError::New(env, std::string(name) + " must be non-negative safe integers");
    return static_cast<uint64_t>(d);
  }

  static Napi::Uint8Array batch_buffer(Napi::Env env, Napi::Value v, const char* name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(env, std::string(name) + " must be Buffers");
    return v.As<Napi::Uint8Array>();
  }

  // writeCopiesUp(offset, length): CowVolume::write_copies_up, on the JS thread (a bitmap test).
  Napi::Value write_copies_up(const Napi::CallbackInfo& info) {
    const uint64_t offset = arg_integer(info, 0, "offset");
    const uint64_t len = arg_integer(info, 1, "length");
    return Napi::Boolean::New(info.Env(), volume_->write_copies_up(offset, static_cast<size_t>(len)));
  }

  Napi::Value zero(const Napi::CallbackInfo& info) {
    const uint64_t offset = arg_integer(info, 0, "offset");
    const uint64_t len = arg_integer(info, 1, "length");
    const bool may_punch = arg_boolean(info, 2, "mayPunch");
    const bool fua = arg_boolean(info, 3, "fua");
    auto volume = volume_;
    return queue_volume_task(info.Env(), "blocksnap.volume.zero",
                             [volume, offset, len, may_punch, fua] { volume->zero(offset, len, may_punch, fua); });
  }

  Napi::Value flush(const Napi::CallbackInfo& info) {
    auto volume = volume_;
    return queue_volume_task(info.Env(), "blocksnap.volume.flush", [volume] { volume->flush(); });
  }

  Napi::Value extents(const Napi::CallbackInfo& info) {
    const uint64_t offset = arg_integer(info, 0, "offset");
    const uint64_t len = arg_integer(info, 1, "length");
    // One JS object per extent returned: the walk stops at the count the caller can use.
    const uint64_t max = arg_integer(info, 2, "max");
    if (max == 0 || max > kMaxExtentsPerCall) {
      Napi::Error err = Napi::RangeError::New(info.Env(), "max must be 1 to " + std::to_string(kMaxExtentsPerCall) + " extents");
      err.Set("code", Napi::String::New(info.Env(), "InvalidArgument"));
      throw err;
    }
    auto volume = volume_;
    auto out = std::make_shared<std::vector<VolumeExtent>>();
    return queue_volume_task(
        info.Env(), "blocksnap.volume.extents",
        [volume, out, offset, len, max] { *out = volume->extents(offset, len, static_cast<size_t>(max)); },
        [out](Napi::Env env) -> Napi::Value {
          Napi::Array a = Napi::Array::New(env, out->size());
          for (size_t i = 0; i < out->size(); ++i) {
            Napi::Object e = Napi::Object::New(env);
            e.Set("length", static_cast<double>((*out)[i].length));
            e.Set("flags", (*out)[i].flags);
            a.Set(static_cast<uint32_t>(i), e);
          }
          return a;
        });
  }

  Napi::Value push_layer(const Napi::CallbackInfo& info) {
    if (info.Length() < 1) throw Napi::TypeError::New(info.Env(), "files must be an object { dataPath, mapPath }");
    LayerFiles files = layer_files(info.Env(), info[0]);
    auto volume = volume_;
    return queue_volume_task(info.Env(), "blocksnap.volume.pushLayer", [volume, files] { volume->push_layer(files); });
  }

  Napi::Value pop_empty_top(const Napi::CallbackInfo& info) {
    auto volume = volume_;
    auto popped = std::make_shared<bool>(false);
    return queue_volume_task(info.Env(), "blocksnap.volume.popEmptyTop", [volume, popped] { *popped = volume->pop_empty_top(); },
                             [popped](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, *popped); });
  }

  // dirtyBlocks(layerCount) → Promise<Uint32Array>, on the pool: it visits every block of the
  // disk in each frozen layer's map.
  Napi::Value dirty_blocks(const Napi::CallbackInfo& info) {
    const uint64_t k = arg_integer(info, 0, "layerCount");
    auto volume = volume_;
    auto blocks = std::make_shared<std::vector<uint32_t>>();
    return queue_volume_task(
        info.Env(), "blocksnap.volume.dirtyBlocks", [volume, blocks, k] { *blocks = volume->dirty_blocks(k); },
        [blocks](Napi::Env env) -> Napi::Value {
          Napi::Uint32Array out = Napi::Uint32Array::New(env, blocks->size());
          if (!blocks->empty()) std::memcpy(out.Data(), blocks->data(), blocks->size() * sizeof(uint32_t));
          return out;
        });
  }

  Napi::Value scan_blocks(const Napi::CallbackInfo& info) { return start_scan_blocks(info, volume_); }

  Napi::Value flatten_to(const Napi::CallbackInfo& info) { return start_flatten(info, volume_); }

  // rebase(baseDigests, dropLayers) → Promise<void>, on the pool, the view lent as for open.
  Napi::Value rebase(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(info.Env(), "baseDigests must be a Buffer");
    auto a = info[0].As<Napi::Uint8Array>();
    const HeldBytes digests(a.Data(), a.ByteLength(), std::make_shared<Napi::Reference<Napi::Uint8Array>>(Napi::Persistent(a)));
    const uint64_t drop = arg_integer(info, 1, "dropLayers");
    auto volume = volume_;
    return queue_volume_task(info.Env(), "blocksnap.volume.rebase",
                             [volume, digests, drop] { volume->rebase(std::span(digests.data(), digests.size()), drop); });
  }

  Napi::Value store_bytes_read(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(volume_->store_bytes_read()));
  }

  // writtenBytes(): CowVolume::written_bytes, on the JS thread (a counter, whatever the size).
  Napi::Value written_bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(or_js_error(info.Env(), [&] { return volume_->written_bytes(); })));
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    auto volume = volume_;
    return queue_volume_task(info.Env(), "blocksnap.volume.close", [volume] { volume->close(); });
  }

  // Shared with the tasks in flight, so the volume outlives a JS object collected meanwhile.
  std::shared_ptr<CowVolume> volume_;
};

}  // namespace

Napi::Function volume_class(Napi::Env env) { return VolumeWrap::define(env); }

Napi::Value create_volume_layer(const Napi::CallbackInfo& info) {
  Options o(info);
  LayerFiles files{o.string("dataPath"), o.string("mapPath")};
  const uint64_t size = o.integer("sizeBytes");
  const std::string id = o.string("layerId");
  return queue_volume_task(info.Env(), "blocksnap.createVolumeLayer", [files, size, id] { create_cow_layer(files, size, id); });
}

namespace {

struct MapsToCount {
  std::vector<std::string> map_paths;
  uint64_t size_bytes;
};

MapsToCount maps_to_count(const Napi::CallbackInfo& info) {
  Options o(info);
  MapsToCount m;
  Napi::Value paths = info[0].As<Napi::Object>().Get("mapPaths");
  if (!paths.IsArray()) throw Napi::TypeError::New(info.Env(), "options.mapPaths must be an array of strings");
  Napi::Array a = paths.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value p = a.Get(i);
    if (!p.IsString()) throw Napi::TypeError::New(info.Env(), "options.mapPaths must be an array of strings");
    std::string s = p.As<Napi::String>().Utf8Value();
    if (s.empty() || s.find('\0') != std::string::npos) o.invalid("mapPaths", "must hold non-empty paths without NUL characters");
    m.map_paths.push_back(std::move(s));
  }
  m.size_bytes = o.integer("sizeBytes");
  return m;
}

}  // namespace

Napi::Value count_written_bytes(const Napi::CallbackInfo& info) {
  MapsToCount m = maps_to_count(info);
  auto bytes = std::make_shared<uint64_t>(0);
  return queue_volume_task(
      info.Env(), "blocksnap.countWrittenBytes", [m = std::move(m), bytes] { *bytes = written_bytes_of_maps(m.map_paths, m.size_bytes); },
      [bytes](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(*bytes)); });
}

Napi::Value count_written_bytes_now(const Napi::CallbackInfo& info) {
  const MapsToCount m = maps_to_count(info);
  return Napi::Number::New(info.Env(), static_cast<double>(or_js_error(info.Env(), [&] { return written_bytes_of_maps(m.map_paths, m.size_bytes); })));
}

Napi::Value close_idle_block_files(const Napi::CallbackInfo& info) {
  const Options o(info);
  const auto idle = std::chrono::milliseconds(o.integer("idleMs"));
  return Napi::Number::New(info.Env(), static_cast<double>(or_js_error(info.Env(), [&] { return BlockFileCache::close_idle(idle); })));
}

}  // namespace blocksnap::js
