// How a backing name stored in a qcow2 header is read (formats/backing_name.h) and how a backing
// file whose format is not recorded is probed (formats/format_probe.h): as QEMU reads them, or
// refused.
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/backing_name.h"
#include "formats/format_probe.h"
#include "formats/qcow2_format.h"
#include "tests/harness.h"

using namespace blocksnap;

namespace {

std::vector<uint8_t> bytes(std::string_view s, size_t offset = 0) {
  std::vector<uint8_t> b(offset + s.size() + 16, 0x5c);
  std::copy(s.begin(), s.end(), b.begin() + static_cast<std::ptrdiff_t>(offset));
  return b;
}

}  // namespace

TEST(backing_name_plain_paths_resolve_from_the_image_directory) {
  CHECK_EQ(resolve_backing_path("/vm/a/top.qcow2", "base.raw"), std::string("/vm/a/base.raw"));
  CHECK_EQ(resolve_backing_path("/vm/a/top.qcow2", "/data/base.raw"), std::string("/data/base.raw"));
  // A colon after the first '/' is part of a path, not a protocol.
  CHECK_EQ(resolve_backing_path("/vm/a/top.qcow2", "sub/x:y.raw"), std::string("/vm/a/sub/x:y.raw"));
}

TEST(backing_name_absolute_file_protocol_is_the_path_after_it) {
  CHECK_EQ(resolve_backing_path("/vm/a/top.qcow2", "file:/data/base.raw"), std::string("/data/base.raw"));
}

TEST(backing_name_relative_file_protocol_is_refused) {
  CHECK_THROWS_CODE(resolve_backing_path("/vm/a/top.qcow2", "file:base.raw"), ErrorCode::UnsupportedFormat);
  CHECK_THROWS_CODE(resolve_backing_path("/vm/a/top.qcow2", "file:"), ErrorCode::UnsupportedFormat);
}

TEST(backing_name_other_protocols_are_refused_naming_them) {
  for (const char* name : {"nbd:localhost:10809", "http://host/x.raw", "rbd:pool/img", "json:{}", "odd:x.raw", ":x.raw"}) {
    try {
      resolve_backing_path("/vm/top.qcow2", name);
      ::harness::fail(__FILE__, __LINE__, std::string(name) + " was not refused");
    } catch (const Error& e) {
      CHECK_EQ(std::string(e.code_name()), std::string("UnsupportedFormat"));
      const std::string name_s = name;
      const std::string protocol = name_s.substr(0, name_s.find(':'));
      CHECK(std::string(e.what()).find(protocol + ":") != std::string::npos);
      CHECK_EQ(e.path, std::string("/vm/top.qcow2"));
    }
  }
}

TEST(format_probe_finds_qcow2_by_its_magic_and_raw_otherwise) {
  std::vector<uint8_t> q(64, 0);
  qcow2::put_be32(q.data(), qcow2::kMagic);
  CHECK(probe_backing_format(q, "/vm/top.qcow2", "/vm/b") == ImageFormat::Qcow2);
  CHECK(probe_backing_format(bytes("an ordinary disk"), "/vm/top.qcow2", "/vm/b") == ImageFormat::Raw);
  CHECK(probe_backing_format({}, "/vm/top.qcow2", "/vm/b") == ImageFormat::Raw);
  // Too short to hold the magic it starts like.
  CHECK(probe_backing_format(std::vector<uint8_t>{'K', 'D', 'M'}, "/vm/top.qcow2", "/vm/b") == ImageFormat::Raw);
}

TEST(format_probe_refuses_the_magic_of_every_other_format_qemu_probes) {
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = {
      {"vmdk", bytes("KDMV")},
      {"vmdk", bytes("COWD")},
      {"vmdk", bytes("# Disk DescriptorFile\n")},
      {"vhdx", bytes("vhdxfile")},
      {"vpc", bytes("conectix")},
      {"vdi", bytes(std::string_view("\x7f\x10\xda\xbe", 4), 64)},
      {"qed", bytes(std::string_view("QED\0", 4))},
      {"luks", bytes("LUKS\xba\xbe")},
      {"parallels", bytes("WithoutFreeSpace")},
      {"parallels", bytes("WithouFreSpacExt")},
      {"bochs", bytes("Bochs Virtual HD Image")},
      {"cloop", bytes("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n")},
  };
  for (const auto& [format, head] : cases) {
    try {
      probe_backing_format(head, "/vm/top.qcow2", "/vm/b.img");
      ::harness::fail(__FILE__, __LINE__, format + " was read as raw");
    } catch (const Error& e) {
      CHECK_EQ(std::string(e.code_name()), std::string("UnsupportedFormat"));
      CHECK(std::string(e.what()).find("probe it as " + format) != std::string::npos);
    }
  }
}

TEST(format_probe_refuses_a_name_qemu_probes_as_dmg) {
  CHECK_THROWS_CODE(probe_backing_format(bytes("an ordinary disk"), "/vm/top.qcow2", "/vm/b.dmg"), ErrorCode::UnsupportedFormat);
}
