// Entry point of blocksnap_native.node: exports only. The typed API and its documentation live
// in src/native/index.ts, the only module that loads this file.
#include <napi.h>

#include "workers/apply_worker.h"
#include "workers/attributes_check.h"
#include "workers/data_dir_lock.h"
#include "workers/hash_buffer.h"
#include "workers/image_lock.h"
#include "workers/peer_socket.h"
#include "workers/qcow2_worker.h"
#include "workers/scan_worker.h"
#include "workers/verify_worker.h"
#include "workers/volume_wrap.h"

static Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("scanImage", Napi::Function::New(env, blocksnap::js::scan_image, "scanImage"));
  exports.Set("applyImage", Napi::Function::New(env, blocksnap::js::apply_image, "applyImage"));
  exports.Set("verifyBlocks", Napi::Function::New(env, blocksnap::js::verify_blocks, "verifyBlocks"));
  exports.Set("lockFile", Napi::Function::New(env, blocksnap::js::lock_file, "lockFile"));
  exports.Set("lockDirectory", Napi::Function::New(env, blocksnap::js::lock_directory, "lockDirectory"));
  exports.Set("hashBuffer", Napi::Function::New(env, blocksnap::js::hash_buffer, "hashBuffer"));
  exports.Set("writeQcow2", Napi::Function::New(env, blocksnap::js::write_qcow2, "writeQcow2"));
  exports.Set("qcow2Header", Napi::Function::New(env, blocksnap::js::qcow2_header, "qcow2Header"));
  exports.Set("probeBackingFormat", Napi::Function::New(env, blocksnap::js::probe_backing_format, "probeBackingFormat"));
  exports.Set("probeImageLocks", Napi::Function::New(env, blocksnap::js::probe_image_locks, "probeImageLocks"));
  exports.Set("holdImageLocks", Napi::Function::New(env, blocksnap::js::hold_image_locks, "holdImageLocks"));
  exports.Set("openImageDir", Napi::Function::New(env, blocksnap::js::open_image_dir, "openImageDir"));
  exports.Set("checkAttributesCopyable", Napi::Function::New(env, blocksnap::js::check_attributes_copyable, "checkAttributesCopyable"));
  exports.Set("accessAcl", Napi::Function::New(env, blocksnap::js::access_acl, "accessAcl"));
  exports.Set("inodeFlags", Napi::Function::New(env, blocksnap::js::inode_flags, "inodeFlags"));
  exports.Set("Volume", blocksnap::js::volume_class(env));
  exports.Set("createVolumeLayer", Napi::Function::New(env, blocksnap::js::create_volume_layer, "createVolumeLayer"));
  exports.Set("countWrittenBytes", Napi::Function::New(env, blocksnap::js::count_written_bytes, "countWrittenBytes"));
  exports.Set("closeIdleBlockFiles", Napi::Function::New(env, blocksnap::js::close_idle_block_files, "closeIdleBlockFiles"));
  exports.Set("countWrittenBytesNow", Napi::Function::New(env, blocksnap::js::count_written_bytes_now, "countWrittenBytesNow"));
  exports.Set("socketPeer", Napi::Function::New(env, blocksnap::js::socket_peer, "socketPeer"));
  return exports;
}

NODE_API_MODULE(blocksnap_native, init)
