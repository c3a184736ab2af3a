{
  "targets": [
    {
      "target_name": "blocksnap_native",
      "sources": [
        "native/addon.cc",
        "native/workers/apply_worker.cc",
        "native/workers/args.cc",
        "native/workers/attributes_check.cc",
        "native/workers/blocking_js_call.cc",
        "native/workers/data_dir_lock.cc",
        "native/workers/fd_handle.cc",
        "native/workers/hash_buffer.cc",
        "native/workers/image_lock.cc",
        "native/workers/job_worker.cc",
        "native/workers/js_error.cc",
        "native/workers/peer_socket.cc",
        "native/workers/qcow2_worker.cc",
        "native/workers/scan_worker.cc",
        "native/workers/verify_worker.cc",
        "native/workers/volume_jobs.cc",
        "native/workers/volume_task.cc",
        "native/workers/volume_wrap.cc",
        "<!@(node -p \"require('./native/sources.json').map((f) => 'native/' + f).join(' ')\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-O3", "-Wall", "-Wextra"]
    }
  ]
}
