// A file a job created must not outlive the job's failure or cancellation: a half-written image
// that looks like a finished one is worse than none.
#pragma once

#include <unistd.h>

#include <string>

namespace blocksnap {

class RemoveOnFailure {
 public:
  explicit RemoveOnFailure(const std::string& path, bool armed = true) : path_(path), armed_(armed) {}
  ~RemoveOnFailure() {
    if (armed_) ::unlink(path_.c_str());
  }
  RemoveOnFailure(const RemoveOnFailure&) = delete;
  RemoveOnFailure& operator=(const RemoveOnFailure&) = delete;
  void disarm() { armed_ = false; }

 private:
  const std::string& path_;
  bool armed_;
};

}  // namespace blocksnap
