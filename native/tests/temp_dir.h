// Scratch files for tests: a private directory removed with everything in it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace testing_support {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Creates (or truncates) `path` with size `size`, all hole.
void make_sparse_file(const std::string& path, uint64_t size);
void write_bytes(const std::string& path, uint64_t offset, const std::vector<uint8_t>& data);
std::vector<uint8_t> read_file(const std::string& path);
// Deterministic non-zero pattern.
std::vector<uint8_t> pattern(size_t len, uint8_t seed);
// 512-byte sectors allocated, from st_blocks.
uint64_t allocated_bytes(const std::string& path);
// Runs a shell command (QEMU's tools as the judge); returns its exit status and puts stdout +
// stderr in `out`.
int run_command(const std::string& cmd, std::string& out);

}  // namespace testing_support
