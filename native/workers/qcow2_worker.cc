#include "workers/qcow2_worker.h"

#include "core/image_file.h"
#include "formats/format_probe.h"
#include "formats/qcow2_reader.h"
#include "io/file_io.h"
#include "formats/qcow2_writer.h"
#include "workers/args.h"
#include "workers/job_worker.h"
#include "workers/js_error.h"

namespace blocksnap::js {

namespace {

Napi::Value qcow2_write_result(Napi::Env env, const Qcow2WriteResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("sizeBytes", static_cast<double>(r.size_bytes));
  o.Set("blocksWritten", static_cast<double>(r.blocks_written));
  o.Set("bytesWritten", static_cast<double>(r.bytes_written));
  o.Set("fileBytes", static_cast<double>(r.file_bytes));
  o.Set("blocksFromBacking", static_cast<double>(r.blocks_from_backing));
  o.Set("clustersZeroed", static_cast<double>(r.clusters_zeroed));
  o.Set("progressTotal", static_cast<double>(r.progress_total));
  return o;
}

}  // namespace

Napi::Value write_qcow2(const Napi::CallbackInfo& info) {
  Options o(info);
  Qcow2WriteParams p;
  read_snapshot_content(o, p);
  if (o.has("clusterBits")) {
    const uint64_t bits = o.integer("clusterBits");
    if (bits < 9 || bits > 21) o.invalid("clusterBits", "must be 9..21");
    p.cluster_bits = static_cast<uint32_t>(bits);
  }
  if (o.has("version")) {
    const uint64_t v = o.integer("version");
    if (v != 2 && v != 3) o.invalid("version", "must be 2 or 3");
    p.version = static_cast<uint32_t>(v);
  }
  if (o.has("backingFile")) {
    p.backing_file = o.string("backingFile");
    p.backing_format = o.string("backingFormat");
    if (p.backing_format != "raw" && p.backing_format != "qcow2") o.invalid("backingFormat", "must be 'raw' or 'qcow2'");
    // What the image's content is compared with, so that it holds only where it differs.
    p.checked_backing = checked_backing_chain(o);
    if (p.checked_backing.empty()) o.invalid("backingChain", "must name the checked backing files of backingFile");
  } else if (o.has("backingChain")) {
    o.invalid("backingChain", "is for an image with a backing file only");
  }
  if (o.has("compressionType")) {
    const std::string c = o.string("compressionType");
    if (c != "zlib" && c != "zstd") o.invalid("compressionType", "must be 'zlib' or 'zstd'");
    if (c == "zstd" && p.version < 3) o.invalid("compressionType", "zstd needs version 3");
    p.compression_type = c == "zstd" ? qcow2::kCompressionZstd : qcow2::kCompressionZlib;
  }
  if (o.has("replace")) p.replace = o.string("replace");
  p.replace_id = o.identity("replaceId");
  if (p.replace_id && p.replace.empty()) o.invalid("replaceId", "is for a rollback (replace) only");
  p.threads = o.threads();
  Napi::Function on_progress = o.function("onProgress");
  return start_job(
      info.Env(), "blocksnap.writeQcow2", on_progress,
      [p = std::move(p)](JobControl& control, const ProgressFn& progress) { return write_qcow2_image(p, control, progress); },
      qcow2_write_result);
}

Napi::Value qcow2_header(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = path_argument(info);
  std::string named_as = path;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsString()) throw Napi::TypeError::New(env, "the second argument (namedAs) must be a string");
    named_as = info[1].As<Napi::String>().Utf8Value();
  }
  const std::optional<FileIdentity> expected = identity_argument(info, 2);
  try {
    const Qcow2Link l = read_qcow2_link(path, named_as, expected);
    const Qcow2Header& h = l.header;
    Napi::Object o = Napi::Object::New(env);
    o.Set("version", h.version);
    o.Set("clusterBits", h.cluster_bits);
    o.Set("sizeBytes", static_cast<double>(h.size));
    o.Set("internalSnapshots", h.nb_snapshots);
    o.Set("bitmaps", h.nb_bitmaps);
    o.Set("extendedL2", h.extended_l2());
    o.Set("dirty", (h.incompatible & 1) != 0);
    o.Set("compressionType", h.compression_type == 0 ? "zlib" : "zstd");
    o.Set("backingFile", h.backing_file.empty() ? env.Null() : Napi::String::New(env, h.backing_file));
    o.Set("backingPath", l.backing_path.empty() ? env.Null() : Napi::String::New(env, l.backing_path));
    o.Set("backingFormat", !l.backing_format ? env.Null() : Napi::String::New(env, *l.backing_format == ImageFormat::Qcow2 ? "qcow2" : "raw"));
    o.Set("dev", Napi::BigInt::New(env, static_cast<uint64_t>(l.dev)));
    o.Set("ino", Napi::BigInt::New(env, static_cast<uint64_t>(l.ino)));
    return o;
  } catch (const Error& e) {
    throw to_js_error(env, e);
  }
}

Napi::Value probe_backing_format(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = path_argument(info);
  if (info.Length() < 3 || !info[1].IsString() || !info[2].IsString())
    throw Napi::TypeError::New(env, "the second and third arguments (image, name) must be strings");
  const std::string image = info[1].As<Napi::String>().Utf8Value();
  const std::string name = info[2].As<Napi::String>().Utf8Value();
  const std::optional<FileIdentity> expected = identity_argument(info, 3);
  try {
    const ImageFile f = open_image_checked(path, expected);
    uint8_t head[kProbeBytes];
    const size_t n = read_at(f.fd.get(), head, sizeof head, 0, path);
    return Napi::String::New(env, blocksnap::probe_backing_format(std::span<const uint8_t>(head, n), image, name) == ImageFormat::Qcow2 ? "qcow2" : "raw");
  } catch (const Error& e) {
    throw to_js_error(env, e);
  }
}

}  // namespace blocksnap::js
