#include "core/store_layout.h"

namespace blocksnap {

std::string fanout_dir_path(const std::string& store_dir, const Digest& d) {
  return store_dir + "/" + to_hex(d).substr(0, kFanoutHexChars);
}

std::string fanout_dir_path(const std::string& store_dir, size_t fanout_index) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name(kFanoutHexChars, '0');
  for (size_t i = kFanoutHexChars; i-- > 0; fanout_index >>= 4) name[i] = kHex[fanout_index & 0xf];
  return store_dir + "/" + name;
}

std::string block_file_path(const std::string& store_dir, const Digest& d) {
  std::string hex = to_hex(d);
  return store_dir + "/" + hex.substr(0, kFanoutHexChars) + "/" + hex;
}

std::string tmp_dir_path(const std::string& store_dir) { return store_dir + "/" + kTmpDirName; }

}  // namespace blocksnap
