#include "formats/format_probe.h"

#include <cstring>

#include "core/error.h"
#include "formats/qcow2_format.h"

namespace blocksnap {

namespace {

struct Magic {
  const char* format;
  size_t offset;
  std::string_view bytes;
};

using namespace std::string_view_literals;

// What each QEMU probe function looks for first (block/<format>.c); the further checks some of
// them make are left out, so this may refuse a file QEMU would still read as raw, never the other
// way round.
constexpr Magic kMagics[] = {
    {"vmdk", 0, "KDMV"sv},
    {"vmdk", 0, "COWD"sv},
    {"vmdk", 0, "# Disk DescriptorFile"sv},
    {"vhdx", 0, "vhdxfile"sv},
    {"vpc", 0, "conectix"sv},
    {"vdi", 64, "\x7f\x10\xda\xbe"sv},  // the signature 0xbeda107f, little-endian, after the 64-byte text
    {"qed", 0, "QED\0"sv},
    {"luks", 0, "LUKS\xba\xbe"sv},
    {"parallels", 0, "WithoutFreeSpace"sv},
    {"parallels", 0, "WithouFreSpacExt"sv},
    {"bochs", 0, "Bochs Virtual HD Image"sv},
    {"cloop", 0, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"sv},
};

bool ends_with(const std::string& s, std::string_view end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

[[noreturn]] void refuse(const std::string& image, const std::string& name, const std::string& format, const std::string& why) {
  Error e(ErrorCode::UnsupportedFormat, image + ": its backing file " + name + " records no format, and QEMU would probe it as " + format +
                                            " (" + why + "), which is not supported (raw and qcow2 are); record its format " +
                                            "(qemu-img rebase -u -b NAME -F FORMAT) or convert it");
  e.path = image;
  throw e;
}

}  // namespace

ImageFormat probe_backing_format(std::span<const uint8_t> head, const std::string& image, const std::string& name) {
  if (head.size() >= 4 && qcow2::get_be32(head.data()) == qcow2::kMagic) return ImageFormat::Qcow2;
  for (const Magic& m : kMagics) {
    if (head.size() >= m.offset + m.bytes.size() && std::memcmp(head.data() + m.offset, m.bytes.data(), m.bytes.size()) == 0)
      refuse(image, name, m.format, "its magic");
  }
  // QEMU's dmg probe goes by the name alone, and outscores raw.
  if (ends_with(name, ".dmg")) refuse(image, name, "dmg", "its name ends in .dmg");
  return ImageFormat::Raw;
}

}  // namespace blocksnap
