#include "formats/backing_name.h"

#include "core/error.h"
#include "io/file_io.h"

namespace blocksnap {

namespace {

[[noreturn]] void unsupported(const std::string& image, const std::string& what) {
  Error e(ErrorCode::UnsupportedFormat, image + ": " + what);
  e.path = image;
  throw e;
}

}  // namespace

std::string resolve_backing_path(const std::string& image_path, const std::string& backing_name) {
  const size_t stop = backing_name.find_first_of(":/");
  if (stop != std::string::npos && backing_name[stop] == ':') {
    const std::string protocol = backing_name.substr(0, stop);
    if (protocol == "json") unsupported(image_path, "json: backing file specifications are not supported");
    if (protocol != "file")
      unsupported(image_path, "the backing file \"" + backing_name + "\" names the protocol \"" + protocol +
                                  ":\", which is not a file; only plain file names (and file:/absolute/path) are supported");
    const std::string rest = backing_name.substr(stop + 1);
    if (rest.empty() || rest[0] != '/')
      unsupported(image_path, "the backing file \"" + backing_name + "\" is a relative file: name, which QEMU opens from its own working " +
                                  "directory, not from the image's; give it as an absolute name (qemu-img rebase -u -b /absolute/path)");
    return rest;
  }
  if (!backing_name.empty() && backing_name[0] == '/') return backing_name;
  return parent_dir(image_path) + "/" + backing_name;
}

}  // namespace blocksnap
