// A qcow2 rollback renames a new image over the disk: the extended attributes of the old one
// (labels, ACLs, trusted.* and user.*) must be on the new one, or the rollback must be refused
// with the old image left in place. Real files, real attributes.
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/block_writer.h"
#include "core/digest.h"
#include "formats/block_source.h"
#include "formats/qcow2_reader.h"
#include "formats/qcow2_writer.h"
#include "io/file_attributes.h"
#include "tests/harness.h"
#include "tests/no_tmpfile.h"
#include "tests/stored_blocks.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kBlock = 64 * 1024;

// A scratch directory under `base`, removed with everything in it. (TempDir always uses TMPDIR;
// these tests may need a filesystem that holds larger attributes.)
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& base) {
    std::string tmpl = base + "/blocksnap-xattr-test-XXXXXX";
    if (::mkdtemp(tmpl.data())) path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string tmp_base() {
  const char* base = std::getenv("TMPDIR");
  return base && *base ? base : "/tmp";
}

// Two snapshots' worth of blocks in a store under `dir`: the disk's content now, and the one the
// rollback goes back to.
struct Store {
  std::string dir;
  std::vector<uint8_t> now, then;
};

Store make_store(const std::string& dir) {
  std::filesystem::create_directory(dir);
  BlockWriter w(dir);
  Store s{dir, put_blocks(w, {pattern(kBlock, 1), pattern(kBlock, 2), {}}), put_blocks(w, {{}, pattern(kBlock, 3), pattern(kBlock, 4)})};
  w.sync();
  return s;
}

void write_image(const Store& store, const std::string& path, const std::vector<uint8_t>& digests,
                 const std::string& replace = "") {
  Qcow2WriteParams p;
  p.image_path = path;
  p.replace = replace;
  p.store_dir = store.dir;
  p.block_size = kBlock;
  p.size_bytes = 3 * kBlock;
  p.digests = digests;
  JobControl control;
  write_qcow2_image(p, control, nullptr);
}

// The rollback of `image` to the store's `then` content, through the writer that replaces it.
void roll_back(const Store& store, const std::string& dir, const std::string& name) {
  write_image(store, dir + "/." + name + ".blocksnap-rollback", store.then, dir + "/" + name);
}

std::vector<uint8_t> content(const std::string& image) {
  auto src = open_qcow2_source(image);
  std::vector<uint8_t> out(src->size());
  const SourceRead r = src->read(0, out.size(), out.data());
  if (r.zero) std::fill(out.begin(), out.end(), 0);
  return out;
}

std::vector<uint8_t> expected_then() {
  std::vector<uint8_t> out(kBlock, 0);
  for (uint8_t seed : {3, 4}) {
    const auto b = pattern(kBlock, seed);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

struct stat stat_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw std::runtime_error("lstat " + path);
  return st;
}

// 0, or the errno of the failed setxattr.
int set_attr(const std::string& path, const std::string& name, const std::string& value) {
  return ::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) == 0 ? 0 : errno;
}

std::optional<std::string> get_attr(const std::string& path, const std::string& name) {
  const ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
  if (n < 0) return std::nullopt;
  std::string v(static_cast<size_t>(n), '\0');
  const ssize_t m = ::lgetxattr(path.c_str(), name.c_str(), v.data(), v.size());
  if (m < 0) return std::nullopt;
  v.resize(static_cast<size_t>(m));
  return v;
}

std::map<std::string, std::string> all_attrs(const std::string& path) {
  std::map<std::string, std::string> out;
  const ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
  if (n <= 0) return out;
  std::string names(static_cast<size_t>(n), '\0');
  const ssize_t m = ::llistxattr(path.c_str(), names.data(), names.size());
  for (size_t at = 0; m > 0 && at < static_cast<size_t>(m);) {
    const std::string name(names.c_str() + at);
    at += name.size() + 1;
    if (auto v = get_attr(path, name)) out[name] = *v;
  }
  return out;
}

// The binary form the kernel takes for system.posix_acl_access/default: version 2, then
// {tag, perm, id} little endian, sorted by tag.
std::string acl(std::initializer_list<std::tuple<uint16_t, uint16_t, uint32_t>> entries) {
  std::string out;
  auto le = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  le(2, 4);
  for (const auto& [tag, perm, id] : entries) le(tag, 2), le(perm, 2), le(id, 4);
  return out;
}
constexpr uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kMask = 0x10, kOther = 0x20;
constexpr uint32_t kNoId = 0xffffffff, kNobody = 65534;

// Runs fn on a thread of its own without the capabilities `drop` in its effective set: capset(2)
// changes the calling thread only (the writer's threads inherit it), so the rest of the test
// process keeps them. A daemon not running as root lacks all of them.
template <typename Fn>
void without_capabilities(std::initializer_list<int> drop, Fn fn) {
  std::exception_ptr err;
  std::thread t([&] {
    try {
      __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
      __user_cap_data_struct data[2]{};
      if (::syscall(SYS_capget, &hdr, data) != 0) throw std::runtime_error("capget failed");
      for (int c : drop) data[c / 32].effective &= ~(1u << (c % 32));
      if (::syscall(SYS_capset, &hdr, data) != 0) throw std::runtime_error("capset failed");
      fn();
    } catch (...) {
      err = std::current_exception();
    }
  });
  t.join();
  if (err) std::rethrow_exception(err);
}

void note(const char* test, const std::string& what) { std::printf("  note (%s): %s\n", test, what.c_str()); }

}  // namespace

// The writer reads names and values into a 256-byte buffer first and grows it on ERANGE: here
// the name list is several KiB and one value over 4 KiB (with NUL bytes in it), so both grow.
TEST(qcow2_rollback_carries_every_extended_attribute_to_the_new_image) {
  struct Plan {
    size_t large, count;
  };
  // ext4 without ea_inode keeps at most one 4 KiB block of attributes per file, tmpfs none
  // before Linux 6.6: the first plan that some filesystem here holds is used.
  const Plan plans[] = {{16384, 150}, {2048, 20}, {1024, 12}};
  const std::vector<std::string> bases = {tmp_base(), "/dev/shm"};
  std::string large_value;
  for (size_t i = 0; i < plans[0].large; ++i) large_value.push_back(static_cast<char>(i * 7 % 251));
  auto name_of = [](size_t i) {
    char name[96];
    std::snprintf(name, sizeof name, "user.blocksnap-test.attribute-with-a-long-name-%03zu", i);
    return std::string(name);
  };

  for (const Plan& plan : plans) {
    for (const std::string& base : bases) {
      ScratchDir dir(base);
      if (!dir.ok()) continue;
      const Store store = make_store(dir / "store");
      const std::string img = dir / "disk.qcow2";
      write_image(store, img, store.now);
      const std::string large = large_value.substr(0, plan.large);
      bool fits = set_attr(img, "user.blocksnap-test.large", large) == 0;
      for (size_t i = 0; fits && i < plan.count; ++i) fits = set_attr(img, name_of(i), "value " + std::to_string(i)) == 0;
      if (!fits) continue;
      if (&plan != &plans[0])
        note("carries_every_extended_attribute", "no filesystem here holds " + std::to_string(plans[0].large) +
                                                     "-byte attribute values; checked " + std::to_string(plan.large) +
                                                     " bytes and " + std::to_string(plan.count) + " names in " + base);
      // An ACL admitting one more user, set on a mode it then changes (0640 → 0660: the mask).
      REQUIRE(::chmod(img.c_str(), 0640) == 0);
      const std::string access = acl({{kUserObj, 6, kNoId}, {kUser, 4, kNobody}, {kGroupObj, 4, kNoId}, {kMask, 6, kNoId}, {kOther, 0, kNoId}});
      const int acl_err = set_attr(img, "system.posix_acl_access", access);
      if (acl_err != 0) note("carries_every_extended_attribute", base + " takes no POSIX ACL: " + describe_errno(acl_err));
      // trusted.* only as root (CAP_SYS_ADMIN); a daemon not running as root never sees them.
      const int trusted_err = set_attr(img, "trusted.blocksnap-test", std::string("t\0rusted", 8));
      if (trusted_err != 0) note("carries_every_extended_attribute", "trusted.* not checked: " + describe_errno(trusted_err));

      const struct stat before = stat_of(img);
      const auto attrs_before = all_attrs(img);
      REQUIRE(attrs_before.size() >= plan.count + 1);
      size_t list_bytes = 0;
      for (const auto& [name, value] : attrs_before) list_bytes += name.size() + 1;
      CHECK(list_bytes > 256);

      roll_back(store, dir.path(), "disk.qcow2");

      const struct stat after = stat_of(img);
      CHECK(after.st_ino != before.st_ino);  // a new file was renamed over the image
      CHECK(content(img) == expected_then());
      const auto attrs_after = all_attrs(img);
      CHECK_EQ(attrs_after.size(), attrs_before.size());
      std::string lacking, differing;
      for (const auto& [name, value] : attrs_before) {
        const auto it = attrs_after.find(name);
        if (it == attrs_after.end()) lacking += " " + name;
        else if (it->second != value) differing += " " + name;
      }
      if (!lacking.empty()) ::harness::fail(__FILE__, __LINE__, "the new image lacks" + lacking.substr(0, 300));
      if (!differing.empty()) ::harness::fail(__FILE__, __LINE__, "the new image has other values of" + differing.substr(0, 300));
      CHECK_EQ(get_attr(img, "user.blocksnap-test.large").value_or("").size(), plan.large);
      if (acl_err == 0) CHECK_EQ(before.st_mode & 07777, 0660u);
      CHECK_EQ(after.st_mode & 07777, before.st_mode & 07777);
      CHECK_EQ(after.st_uid, before.st_uid);
      CHECK_EQ(after.st_gid, before.st_gid);
      CHECK(!std::filesystem::exists(dir / ".disk.qcow2.blocksnap-rollback"));
      return;
    }
  }
  ::harness::fail(__FILE__, __LINE__, "no filesystem under TMPDIR or /dev/shm holds user.* extended attributes");
}

// A default ACL on the directory gives every file created there an access ACL; the old image,
// made before it, has none, and neither may the image that replaces it.
TEST(qcow2_rollback_drops_the_acl_a_default_acl_gave_the_new_image) {
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  write_image(store, img, store.now);
  REQUIRE(::chmod(img.c_str(), 0640) == 0);
  const std::string def = acl({{kUserObj, 7, kNoId}, {kUser, 6, kNobody}, {kGroupObj, 4, kNoId}, {kMask, 6, kNoId}, {kOther, 0, kNoId}});
  const int err = set_attr(dir.path(), "system.posix_acl_default", def);
  if (err != 0) {
    note("drops_the_acl_a_default_acl_gave", "skipped: " + dir.path() + " takes no default ACL: " + describe_errno(err));
    return;
  }
  CHECK(!get_attr(img, "system.posix_acl_access"));

  roll_back(store, dir.path(), "disk.qcow2");

  CHECK(content(img) == expected_then());
  const auto inherited = get_attr(img, "system.posix_acl_access");
  CHECK(!inherited);
  CHECK_EQ(stat_of(img).st_mode & 07777, 0640u);
}

namespace {

// An image at `img` with a user.* attribute and a security.* one other than an LSM's own label,
// which only a process with CAP_SYS_ADMIN may set; false (noted as `test`'s skip) where this
// process may not set it either.
bool image_with_a_guarded_label(const Store& store, const std::string& img, const char* test) {
  write_image(store, img, store.now);
  const int err = set_attr(img, "security.blocksnap-test", "label");
  if (err != 0) {
    note(test, "skipped: setting a security.* attribute needs root: " + describe_errno(err));
    return false;
  }
  REQUIRE(set_attr(img, "user.blocksnap-test", "kept") == 0);
  return true;
}

}  // namespace

// What the rollback cannot give the new image, it refuses before the rename: the old image stays
// as it was, attributes and all, and the new file is gone. security.* other than an LSM's own
// label need CAP_SYS_ADMIN to set, which a daemon not running as root lacks.
TEST(qcow2_rollback_refuses_when_an_attribute_cannot_be_set_and_leaves_the_image) {
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  if (!image_with_a_guarded_label(store, img, "refuses_when_an_attribute_cannot_be_set")) return;
  const struct stat before = stat_of(img);
  const std::vector<uint8_t> bytes = read_file(img);

  without_capabilities({CAP_SYS_ADMIN}, [&] {
    try {
      roll_back(store, dir.path(), "disk.qcow2");
      ::harness::fail(__FILE__, __LINE__, "the rollback succeeded without the security.* attribute");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::PermissionDenied);
      CHECK(std::string(e.what()).find("security.blocksnap-test") != std::string::npos);
      CHECK_EQ(e.path, img);
    }
  });

  const struct stat after = stat_of(img);
  CHECK_EQ(after.st_ino, before.st_ino);
  CHECK(read_file(img) == bytes);
  CHECK(get_attr(img, "security.blocksnap-test") == std::optional<std::string>("label"));
  CHECK(get_attr(img, "user.blocksnap-test") == std::optional<std::string>("kept"));
  CHECK(!std::filesystem::exists(dir / ".disk.qcow2.blocksnap-rollback"));
}

// A daemon not running as root owns the new file (it may not give it away) and needs write
// permission on it to set user.* attributes; the old image's mode (0440 here: the daemon wrote
// it through its group, say) may not grant it, so those attributes go on before the mode.
TEST(qcow2_rollback_sets_user_attributes_before_a_mode_that_forbids_them) {
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  write_image(store, img, store.now);
  const int err = set_attr(img, "user.blocksnap-test", "kept");
  if (err != 0) {
    note("sets_user_attributes_before_a_mode", "skipped: " + dir.path() + " takes no user.* attributes: " + describe_errno(err));
    return;
  }
  REQUIRE(::chmod(img.c_str(), 0440) == 0);

  without_capabilities({CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER}, [&] { roll_back(store, dir.path(), "disk.qcow2"); });

  CHECK(content(img) == expected_then());
  CHECK(get_attr(img, "user.blocksnap-test") == std::optional<std::string>("kept"));
  CHECK_EQ(stat_of(img).st_mode & 07777, 0440u);
}

// A daemon not running as root keeps the group of a disk file of its own when it is a member:
// how such a daemon usually shares images with QEMU. Here the thread is a member of group 4242
// only through its own supplementary list and lacks CAP_CHOWN.
TEST(qcow2_rollback_keeps_the_group_of_its_own_file) {
  if (::geteuid() != 0) {
    note("keeps_the_group", "skipped: giving the image a group the test is not in needs root");
    return;
  }
  constexpr gid_t kGroup = 4242;
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  write_image(store, img, store.now);
  REQUIRE(::chown(img.c_str(), 0, kGroup) == 0);
  REQUIRE(::chmod(img.c_str(), 0660) == 0);

  without_capabilities({CAP_CHOWN}, [&] {
    // The raw call changes this thread's groups only (glibc's wrapper would change every thread's).
    const gid_t groups[] = {kGroup};
    REQUIRE(::syscall(SYS_setgroups, 1, groups) == 0);
    roll_back(store, dir.path(), "disk.qcow2");
  });

  const struct stat st = stat_of(img);
  CHECK(content(img) == expected_then());
  CHECK_EQ(st.st_gid, kGroup);
  CHECK_EQ(st.st_uid, 0u);
  CHECK_EQ(st.st_mode & 07777, 0660u);
}

// ---- check_attributes_copyable: what the engine asks before it journals a qcow2 rollback

namespace {

std::string new_image_of(const std::string& dir, const std::string& name) { return dir + "/." + name + ".blocksnap-rollback"; }

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// What a check must leave as it was: the image file (inode, bytes, change and modification
// times, owner, mode, every attribute) and the names in its directory.
struct Observed {
  struct stat st;
  std::vector<uint8_t> bytes;
  std::map<std::string, std::string> attrs;
  std::vector<std::string> names;
};

Observed observe(const std::string& dir, const std::string& img) {
  return {stat_of(img), read_file(img), all_attrs(img), entries(dir)};
}

#define CHECK_UNTOUCHED(before, after)                                    \
  do {                                                                    \
    CHECK_EQ((after).st.st_ino, (before).st.st_ino);                      \
    CHECK_EQ((after).st.st_ctim.tv_sec, (before).st.st_ctim.tv_sec);      \
    CHECK_EQ((after).st.st_ctim.tv_nsec, (before).st.st_ctim.tv_nsec);    \
    CHECK_EQ((after).st.st_mtim.tv_sec, (before).st.st_mtim.tv_sec);      \
    CHECK_EQ((after).st.st_mtim.tv_nsec, (before).st.st_mtim.tv_nsec);    \
    CHECK_EQ((after).st.st_mode, (before).st.st_mode);                    \
    CHECK_EQ((after).st.st_uid, (before).st.st_uid);                      \
    CHECK_EQ((after).st.st_gid, (before).st.st_gid);                      \
    CHECK((after).bytes == (before).bytes);                               \
    CHECK((after).attrs == (before).attrs);                               \
    CHECK((after).names == (before).names);                               \
  } while (0)

// The Error `fn` throws; nullopt when it throws none.
template <typename Fn>
std::optional<Error> error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

// The check where the filesystem makes unnamed files (`unnamed`) and where it has no O_TMPFILE.
void check_in_mode(const std::string& img, const std::string& new_image, bool unnamed) {
  std::optional<NoTmpfile> named;
  if (!unnamed) named.emplace();
  check_attributes_copyable(img, new_image);
}

// The check must refuse exactly as the rollback then does: same code, message, errno, syscall
// and path, so that the client reads the same reason, only before anything was journaled. The
// message must name `what` (the attribute, or the call that failed).
void check_refuses_like_the_rollback(const Store& store, const TempDir& dir, const std::string& syscall,
                                     const std::string& what) {
  const std::string img = dir / "disk.qcow2";
  const Observed before = observe(dir.path(), img);
  for (const bool unnamed : {true, false}) {
    const std::optional<Error> check = error_of([&] { check_in_mode(img, new_image_of(dir.path(), "disk.qcow2"), unnamed); });
    REQUIRE(check.has_value());
    CHECK(check->code() == ErrorCode::PermissionDenied);
    CHECK_EQ(check->syscall, syscall);
    CHECK(std::string(check->what()).find(what) != std::string::npos);
    CHECK_UNTOUCHED(before, observe(dir.path(), img));
    const std::optional<Error> rollback = error_of([&] { roll_back(store, dir.path(), "disk.qcow2"); });
    REQUIRE(rollback.has_value());
    CHECK_EQ(std::string(check->what()), std::string(rollback->what()));
    CHECK(check->code() == rollback->code());
    CHECK_EQ(check->sys_errno, rollback->sys_errno);
    CHECK_EQ(check->syscall, rollback->syscall);
    CHECK_EQ(check->path, rollback->path);
  }
}

}  // namespace

// A security.* attribute other than an LSM's own label needs CAP_SYS_ADMIN to set: the check
// refuses it, without the image or its directory changing, with the rollback's very error, both
// on an unnamed scratch file and on the named one of filesystems without O_TMPFILE.
TEST(attributes_check_refuses_a_label_the_rollback_could_not_set) {
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  if (!image_with_a_guarded_label(store, img, "attributes_check_refuses_a_label")) return;
  without_capabilities({CAP_SYS_ADMIN}, [&] { check_refuses_like_the_rollback(store, dir, "fsetxattr", "security.blocksnap-test"); });
  // With the capability the same image passes.
  const Observed before = observe(dir.path(), img);
  check_attributes_copyable(img, new_image_of(dir.path(), "disk.qcow2"));
  CHECK_UNTOUCHED(before, observe(dir.path(), img));
}

// A daemon that may give a file away (CAP_CHOWN) but not change a file it does not own
// (CAP_FOWNER) cannot set the mode of the new image once it belongs to the disk's owner: the
// rollback refuses at fchmod, and so does the check.
TEST(attributes_check_refuses_a_mode_the_rollback_could_not_set) {
  if (::geteuid() != 0) {
    note("attributes_check_refuses_a_mode", "skipped: making the image another user's needs root");
    return;
  }
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  write_image(store, img, store.now);
  REQUIRE(::chown(img.c_str(), kNobody, kNobody) == 0);
  REQUIRE(::chmod(img.c_str(), 0640) == 0);
  without_capabilities({CAP_FOWNER}, [&] { check_refuses_like_the_rollback(store, dir, "fchmod", "fchmod"); });
}

// A daemon not running as root cannot give the new image another user (the owner would be locked
// out of its own disk, and only root could give it back), nor a group it is not a member of: the
// check refuses both, naming owner and group, with the rollback's very error.
TEST(attributes_check_refuses_an_owner_or_group_the_rollback_could_not_give) {
  if (::geteuid() != 0) {
    note("attributes_check_refuses_an_owner", "skipped: making the image another user's needs root");
    return;
  }
  constexpr gid_t kGroup = 4242, kOtherGroup = 4243;
  for (const auto& [uid, gid, what] : {std::tuple<uid_t, gid_t, const char*>{kNobody, kGroup, "user 65534"},
                                       std::tuple<uid_t, gid_t, const char*>{0, kOtherGroup, "group 4243"}}) {
    TempDir dir;
    const Store store = make_store(dir / "store");
    const std::string img = dir / "disk.qcow2";
    write_image(store, img, store.now);
    REQUIRE(::chown(img.c_str(), uid, gid) == 0);
    REQUIRE(::chmod(img.c_str(), 0660) == 0);
    // A copy: clang 14 cannot capture a structured binding in a lambda.
    const char* const expected = what;
    without_capabilities({CAP_CHOWN}, [&] {
      const gid_t groups[] = {kGroup};
      REQUIRE(::syscall(SYS_setgroups, 1, groups) == 0);
      check_refuses_like_the_rollback(store, dir, "fchown", expected);
    });
    const struct stat st = stat_of(img);
    CHECK_EQ(st.st_uid, uid);
    CHECK_EQ(st.st_gid, gid);
  }
}

// The inode flags a host sets on images (nodump for backups, noatime) are the new image's too.
TEST(qcow2_rollback_carries_the_inode_flags) {
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  write_image(store, img, store.now);
  const int set = FS_NODUMP_FL | FS_NOATIME_FL;
  {
    const int fd = ::open(img.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    int flags = 0;
    const bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags |= set, ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0);
    const int err = errno;
    ::close(fd);
    if (!ok) {
      note("carries_the_inode_flags", "skipped: " + dir.path() + " takes no chattr +d +A: " + describe_errno(err));
      return;
    }
  }
  const ino_t before = stat_of(img).st_ino;
  check_attributes_copyable(img, new_image_of(dir.path(), "disk.qcow2"));
  roll_back(store, dir.path(), "disk.qcow2");
  CHECK(stat_of(img).st_ino != before);
  CHECK(content(img) == expected_then());
  const int fd = ::open(img.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  int flags = 0;
  REQUIRE(::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0);
  ::close(fd);
  CHECK_EQ(flags & set, set);
}

// What the rollback can copy, the check lets through, leaving the image and its directory as
// they were: an owner it gives the scratch file away to, a mode, user.* and an ACL; and a
// directory whose default ACL gives the scratch file an access ACL the image lacks.
TEST(attributes_check_passes_what_the_rollback_can_copy_and_leaves_nothing) {
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  write_image(store, img, store.now);
  const int err = set_attr(img, "user.blocksnap-test", "kept");
  if (err != 0) {
    note("attributes_check_passes", "skipped: " + dir.path() + " takes no user.* attributes: " + describe_errno(err));
    return;
  }
  if (::geteuid() == 0) REQUIRE(::chown(img.c_str(), kNobody, 4242) == 0);
  REQUIRE(::chmod(img.c_str(), 0640) == 0);
  const std::string access = acl({{kUserObj, 6, kNoId}, {kUser, 4, 4243}, {kGroupObj, 4, kNoId}, {kMask, 4, kNoId}, {kOther, 0, kNoId}});
  if (const int e = set_attr(img, "system.posix_acl_access", access); e != 0)
    note("attributes_check_passes", dir.path() + " takes no POSIX ACL: " + describe_errno(e));
  const Observed before = observe(dir.path(), img);
  for (const bool unnamed : {true, false}) {
    check_in_mode(img, new_image_of(dir.path(), "disk.qcow2"), unnamed);
    CHECK_UNTOUCHED(before, observe(dir.path(), img));
  }

  const std::string plain = dir / "plain.qcow2";
  write_image(store, plain, store.now);
  const std::string def = acl({{kUserObj, 7, kNoId}, {kUser, 6, kNobody}, {kGroupObj, 4, kNoId}, {kMask, 6, kNoId}, {kOther, 0, kNoId}});
  if (const int e = set_attr(dir.path(), "system.posix_acl_default", def); e != 0) {
    note("attributes_check_passes", dir.path() + " takes no default ACL: " + describe_errno(e));
    return;
  }
  const Observed plain_before = observe(dir.path(), plain);
  for (const bool unnamed : {true, false}) {
    check_in_mode(plain, new_image_of(dir.path(), "plain.qcow2"), unnamed);
    CHECK_UNTOUCHED(plain_before, observe(dir.path(), plain));
  }
}

// The image and its directory are opened as every checked path is: a symlink as the image, or
// on the way to it, was swapped in after the engine resolved the path (NotAnImage); nothing is
// created then, nor for an image that is gone.
TEST(attributes_check_follows_no_symlink) {
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  write_image(store, img, store.now);
  REQUIRE(::symlink(img.c_str(), (dir / "link.qcow2").c_str()) == 0);
  REQUIRE(::symlink(dir.path().c_str(), (dir / "via").c_str()) == 0);
  const std::vector<std::string> names = entries(dir.path());
  CHECK_THROWS_CODE(check_attributes_copyable(dir / "link.qcow2", new_image_of(dir.path(), "link.qcow2")), ErrorCode::NotAnImage);
  CHECK_THROWS_CODE(check_attributes_copyable(dir / "via/disk.qcow2", dir / "via/.disk.qcow2.blocksnap-rollback"), ErrorCode::NotAnImage);
  CHECK_THROWS_CODE(check_attributes_copyable(dir / "gone.qcow2", new_image_of(dir.path(), "gone.qcow2")), ErrorCode::ImageNotFound);
  CHECK(entries(dir.path()) == names);
}

// Where the daemon may not create the new image, the rollback fails at that create, after it
// was journaled; the check's scratch file is created in the same directory and fails first.
TEST(attributes_check_refuses_a_directory_the_new_image_cannot_be_created_in) {
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  write_image(store, img, store.now);
  REQUIRE(::chmod(dir.path().c_str(), 0555) == 0);
  without_capabilities({CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER}, [&] {
    for (const bool unnamed : {true, false}) {
      const std::optional<Error> e = error_of([&] { check_in_mode(img, new_image_of(dir.path(), "disk.qcow2"), unnamed); });
      REQUIRE(e.has_value());
      CHECK(e->code() == ErrorCode::PermissionDenied);
      CHECK_EQ(e->path, img);
      // The directory is what the operator can fix; the new image's temp name means nothing to them.
      const std::string message = e->what();
      CHECK(message.find("may not create files in " + dir.path() + " (") != std::string::npos);
      CHECK(message.find("blocksnap-rollback") == std::string::npos);
    }
  });
  REQUIRE(::chmod(dir.path().c_str(), 0700) == 0);
}

// Whoever may write the disk's directory can put anything under the new image's name; the
// writer removes none of it (a root daemon would delete another user's file) and refuses.
TEST(qcow2_rollback_removes_nothing_it_finds_under_the_new_images_name) {
  TempDir dir;
  const Store store = make_store(dir / "store");
  const std::string img = dir / "disk.qcow2";
  write_image(store, img, store.now);
  const struct stat before = stat_of(img);
  const std::vector<uint8_t> theirs = pattern(100, 7);
  for (const bool unnamed : {true, false}) {
    std::optional<NoTmpfile> named;
    if (!unnamed) named.emplace();
    const std::string planted = dir / ".disk.qcow2.blocksnap-rollback";
    write_bytes(planted, 0, theirs);
    const std::optional<Error> e = error_of([&] { roll_back(store, dir.path(), "disk.qcow2"); });
    REQUIRE(e.has_value());
    CHECK(e->code() == ErrorCode::FileExists);
    CHECK(read_file(planted) == theirs);
    CHECK_EQ(stat_of(img).st_ino, before.st_ino);
    std::filesystem::remove(planted);
  }
}
