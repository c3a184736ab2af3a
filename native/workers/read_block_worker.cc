#include "workers/read_block_worker.h"

#include <optional>
#include <string>

#include "core/aligned_buffer.h"
#include "core/block_reader.h"
#include "core/digest.h"
#include "core/error.h"
#include "workers/js_error.h"

namespace blocksnap::js {

namespace {

class ReadBlockWorker : public Napi::AsyncWorker {
 public:
  ReadBlockWorker(Napi::Env env, std::string store_dir, const Digest& digest, std::optional<uint64_t> expected)
      : Napi::AsyncWorker(env, "blocksnap.readBlock"),
        deferred_(Napi::Promise::Deferred::New(env)),
        store_dir_(std::move(store_dir)),
        digest_(digest) {
    options_.expected_length = expected;
  }

  Napi::Promise promise() { return deferred_.Promise(); }

 private:
  void Execute() override {
    try {
      length_ = blocksnap::read_block(store_dir_, digest_, buffer_, options_);
    } catch (const Error& e) {
      error_.emplace(e);
    } catch (const std::exception& e) {
      internal_ = e.what();
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (error_) {
      deferred_.Reject(to_js_error(env, *error_).Value());
    } else if (!internal_.empty()) {
      deferred_.Reject(internal_error(env, internal_).Value());
    } else {
      deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(env, buffer_.data(), length_));
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  std::string store_dir_;
  Digest digest_;
  BlockReadOptions options_;
  AlignedBuffer buffer_;
  size_t length_ = 0;
  std::optional<Error> error_;
  std::string internal_;
};

}  // namespace

Napi::Value read_block(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString()) throw Napi::TypeError::New(env, "storeDir must be a string");
  if (!info[1].IsBuffer() || info[1].As<Napi::Buffer<uint8_t>>().Length() != kDigestSize)
    throw Napi::TypeError::New(env, "digest must be a Buffer of 32 bytes");
  std::optional<uint64_t> expected;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsNumber()) throw Napi::TypeError::New(env, "expectedLength must be a number");
    const double v = info[2].As<Napi::Number>().DoubleValue();
    if (!(v >= 0 && v <= 9007199254740991.0) || v != static_cast<double>(static_cast<uint64_t>(v)))
      throw Napi::TypeError::New(env, "expectedLength must be a non-negative integer");
    expected = static_cast<uint64_t>(v);
  }
  Digest digest;
  auto raw = info[1].As<Napi::Buffer<uint8_t>>();
  std::copy(raw.Data(), raw.Data() + kDigestSize, digest.begin());
  auto* worker = new ReadBlockWorker(env, info[0].As<Napi::String>().Utf8Value(), digest, expected);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace blocksnap::js
