// Files the writers create have no name until they are complete (O_TMPFILE, core/image_file.h):
// while an image is written its directory lists nothing new, so a process killed meanwhile
// leaves nothing anywhere; the named file of filesystems without O_TMPFILE stays the fallback.
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/image_file.h"
#include "formats/block_source.h"
#include "formats/qcow2_writer.h"
#include "formats/raw_writer.h"
#include "io/qemu_lock.h"
#include "tests/harness.h"
#include "tests/no_tmpfile.h"
#include "tests/source_writes.h"
#include "tests/temp_dir.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (const dirent* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Non-zero content of any size; each read first calls `during` (from the writer's threads), and
// fails from `fail_at` on, if set.
class WatchedSource : public BlockSource {
 public:
  WatchedSource(uint64_t size, std::function<void()> during, uint64_t fail_at = UINT64_MAX)
      : size_(size), during_(std::move(during)), fail_at_(fail_at) {}
  uint64_t size() const override { return size_; }
  SourceRead read(uint64_t offset, size_t len, uint8_t* buf) const override {
    {
      std::lock_guard lock(mutex_);
      during_();
    }
    if (offset >= fail_at_) throw Error(ErrorCode::IOError, "the source failed");
    for (size_t i = 0; i < len; ++i) buf[i] = static_cast<uint8_t>((offset + i) * 7 + 1);
    return {len, false};
  }

 private:
  uint64_t size_;
  std::function<void()> during_;
  uint64_t fail_at_;
  mutable std::mutex mutex_;
};

// Records every listing of `dir` that differs from `expected`.
struct DirWatch {
  std::string dir;
  std::vector<std::string> expected;
  std::atomic<int> looks{0};
  std::vector<std::string> seen;  // names beyond `expected`, under the source's lock

  std::function<void()> fn() {
    return [this] {
      ++looks;
      for (const std::string& n : listing(dir))
        if (std::find(expected.begin(), expected.end(), n) == expected.end() &&
            std::find(seen.begin(), seen.end(), n) == seen.end())
          seen.push_back(n);
    };
  }
};

// Runs `child` in a forked process (its own exit status: 0 passed, 77 could not run here, other
// values name the step that failed). Returns that status.
int in_child(const std::function<int()>& child) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(child());
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// Creates `name` in `dir` nameless, writes to it, names it: 0 when that worked and left exactly
// that file, else the step that failed.
int create_write_name(const std::string& dir, const std::string& name) {
  ImageFile f;
  try {
    f = open_image_for_write(dir + "/" + name, true);
  } catch (const Error&) {
    return 10;
  }
  if (!f.nameless) return 11;
  if (!listing(dir).empty()) return 12;
  if (::pwrite(f.fd.get(), "data", 4, 0) != 4 || ::fsync(f.fd.get()) != 0) return 13;
  try {
    name_created(f, dir + "/" + name);
  } catch (const Error&) {
    return 14;
  }
  struct stat st;
  if (::fstat(f.fd.get(), &st) != 0 || st.st_nlink != 1) return 15;
  return listing(dir) == std::vector<std::string>{name} ? 0 : 16;
}

}  // namespace

TEST(created_file_has_no_name_until_it_is_named) {
  TempDir dir;
  const std::string path = dir / "new.img";
  ImageFile f = open_image_for_write(path, true);
  REQUIRE(f.nameless);  // tmpfs and ext4, where the tests run, both have O_TMPFILE
  struct stat st;
  REQUIRE(::fstat(f.fd.get(), &st) == 0);
  CHECK_EQ(st.st_nlink, 0u);
  CHECK_EQ(st.st_mode & 07777, 0600u);
  CHECK(listing(dir.path()).empty());
  REQUIRE(::pwrite(f.fd.get(), "complete", 8, 0) == 8);
  name_created(f, path);
  CHECK(!f.nameless);
  CHECK(listing(dir.path()) == std::vector<std::string>{"new.img"});
  CHECK(read_file(path) == std::vector<uint8_t>({'c', 'o', 'm', 'p', 'l', 'e', 't', 'e'}));
  name_created(f, path);  // once named, nothing more to do
  CHECK(listing(dir.path()) == std::vector<std::string>{"new.img"});
}

TEST(a_nameless_file_dropped_leaves_nothing) {
  TempDir dir;
  {
    ImageFile f = open_image_for_write(dir / "dropped.img", true);
    REQUIRE(::pwrite(f.fd.get(), "half", 4, 0) == 4);
    RemoveCreatedOnFailure cleanup(f);
  }
  CHECK(listing(dir.path()).empty());
}

TEST(a_taken_name_fails_at_creation_and_at_naming) {
  TempDir dir;
  write_bytes(dir / "taken.img", 0, pattern(10, 1));
  CHECK_THROWS_CODE(open_image_for_write(dir / "taken.img", true), ErrorCode::FileExists);
  REQUIRE(::symlink((dir / "elsewhere").c_str(), (dir / "link.img").c_str()) == 0);
  CHECK_THROWS_CODE(open_image_for_write(dir / "link.img", true), ErrorCode::FileExists);

  // The name appears while the file is written: naming it fails, and whoever made that name
  // keeps their file (link(2) never replaces one).
  ImageFile f = open_image_for_write(dir / "late.img", true);
  REQUIRE(f.nameless);
  {
    RemoveCreatedOnFailure cleanup(f);
    write_bytes(dir / "late.img", 0, pattern(10, 2));
    CHECK_THROWS_CODE(name_created(f, dir / "late.img"), ErrorCode::FileExists);
  }
  CHECK(read_file(dir / "late.img") == pattern(10, 2));
  CHECK(!exists(dir / "elsewhere"));
}

TEST(naming_in_a_removed_directory_says_so) {
  TempDir dir;
  const std::string sub = dir / "clones";
  REQUIRE(::mkdir(sub.c_str(), 0700) == 0);
  ImageFile f = open_image_for_write(sub + "/c.img", true);
  REQUIRE(f.nameless);
  REQUIRE(::rmdir(sub.c_str()) == 0);  // empty: the file being written has no name in it
  try {
    name_created(f, sub + "/c.img");
    ::harness::fail(__FILE__, __LINE__, "named in a removed directory");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::ImageNotFound);
    CHECK(std::string(e.what()).find("was removed while the job ran") != std::string::npos);
  }
}

TEST(raw_and_qcow2_writers_give_no_name_until_complete) {
  TempDir dir;
  for (const bool qcow2 : {false, true}) {
    const std::string name = qcow2 ? "clone.qcow2" : "clone.raw";
    DirWatch watch{dir.path(), {}};
    const WatchedSource source(16 * kMiB, watch.fn());
    if (qcow2) write_qcow2(source, dir / name);
    else write_raw(source, dir / name);
    CHECK(watch.looks > 4);
    CHECK(watch.seen.empty());
    CHECK(listing(dir.path()) == std::vector<std::string>{name});
    REQUIRE(::unlink((dir / name).c_str()) == 0);

    // A failure halfway leaves nothing, with nothing to remove.
    const WatchedSource failing(16 * kMiB, watch.fn(), 8 * kMiB);
    if (qcow2) CHECK_THROWS_CODE(write_qcow2(failing, dir / name), ErrorCode::IOError);
    else CHECK_THROWS_CODE(write_raw(failing, dir / name), ErrorCode::IOError);
    CHECK(watch.seen.empty());
    CHECK(listing(dir.path()).empty());
  }
}

TEST(a_qcow2_rollback_writes_its_new_image_nameless_under_qemu_locks) {
  TempDir dir;
  const std::string disk = dir / "disk.qcow2";
  const std::string temp = dir / ".disk.qcow2.blocksnap-rollback";
  const WatchedSource old_content(4 * kMiB, [] {});
  write_qcow2(old_content, disk);
  struct stat before;
  REQUIRE(::stat(disk.c_str(), &before) == 0);

  // While the new image is written: no temp name beside the disk, and the nameless file that is
  // being written holds QEMU's locks, as the named one did.
  DirWatch watch{dir.path(), {"disk.qcow2"}};
  uint32_t locked = 0;
  const auto look = watch.fn();
  const WatchedSource source(16 * kMiB, [&] {
    look();
    DIR* fds = ::opendir("/proc/self/fd");
    if (fds == nullptr) return;
    while (const dirent* e = ::readdir(fds)) {
      char target[4096];
      const std::string link = std::string("/proc/self/fd/") + e->d_name;
      const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      const std::string t(target, static_cast<size_t>(n));
      // A nameless file: "<dir>/#<inode> (deleted)".
      if (t.rfind(dir.path() + "/#", 0) == 0) locked |= probe_qemu_locks(link).held;
    }
    ::closedir(fds);
  });
  write_qcow2(source, temp, 16, disk);
  CHECK(watch.looks > 4);
  CHECK(watch.seen.empty());
  CHECK_EQ(locked, (1u << kQemuPermCount) - 1);
  CHECK(listing(dir.path()) == std::vector<std::string>{"disk.qcow2"});
  struct stat after;
  REQUIRE(::stat(disk.c_str(), &after) == 0);
  CHECK(after.st_ino != before.st_ino);  // renamed over the disk
  CHECK_EQ(static_cast<uint64_t>(open_block_source(disk, ImageFormat::Qcow2)->size()), 16 * kMiB);

  // Anything already under the new image's name is left alone (not ours to remove): the engine
  // picks a fresh random name per rollback and removes its own leftovers itself.
  write_bytes(temp, 0, pattern(10, 3));
  CHECK_THROWS_CODE(write_qcow2(old_content, temp, 16, disk), ErrorCode::FileExists);
  CHECK(read_file(temp) == pattern(10, 3));
}

TEST(without_o_tmpfile_the_file_is_named_while_written_and_removed_on_failure) {
  TempDir dir;
  const NoTmpfile no_tmpfile;
  ImageFile f = open_image_for_write(dir / "named.img", true);
  CHECK(!f.nameless);
  CHECK(listing(dir.path()) == std::vector<std::string>{"named.img"});
  name_created(f, dir / "named.img");  // nothing to do
  CHECK(listing(dir.path()) == std::vector<std::string>{"named.img"});
  REQUIRE(::unlink((dir / "named.img").c_str()) == 0);

  DirWatch watch{dir.path(), {}};
  const WatchedSource source(16 * kMiB, watch.fn());
  write_raw(source, dir / "clone.raw");
  CHECK(watch.seen == std::vector<std::string>{"clone.raw"});
  CHECK(listing(dir.path()) == std::vector<std::string>{"clone.raw"});

  const WatchedSource failing(16 * kMiB, [] {}, 8 * kMiB);
  CHECK_THROWS_CODE(write_qcow2(failing, dir / "clone.qcow2"), ErrorCode::IOError);
  CHECK(listing(dir.path()) == std::vector<std::string>{"clone.raw"});
}

TEST(a_writer_killed_mid_write_leaves_nothing) {
  TempDir dir;
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    const WatchedSource source(64 * kMiB, [&] {
      static bool told = false;
      if (!told) {
        told = true;
        (void)!::write(ready[1], "w", 1);
      }
      ::usleep(20000);
    });
    try {
      write_raw(source, dir / "killed.raw");
    } catch (...) {
    }
    ::_exit(0);
  }
  REQUIRE(pid > 0);
  ::close(ready[1]);
  char c;
  const bool writing = ::read(ready[0], &c, 1) == 1;
  ::usleep(100000);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(ready[0]);
  CHECK(writing);
  CHECK(WIFSIGNALED(status));
  CHECK(listing(dir.path()).empty());
}

TEST(a_nameless_file_is_named_without_proc) {
  if (::geteuid() != 0) return;  // a mount namespace of its own needs root
  TempDir dir;
  const int r = in_child([&] {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 77;
    if (::umount2("/proc", MNT_DETACH) != 0 && errno != EINVAL) return 77;
    if (::access("/proc/self/fd", F_OK) == 0) return 77;
    return create_write_name(dir.path(), "noproc.img");
  });
  if (r == 77) return;
  CHECK_EQ(r, 0);
}

TEST(a_nameless_file_is_named_through_proc_when_not_by_descriptor) {
  if (::geteuid() != 0) return;
  TempDir dir;
  const int r = in_child([&] {
    ImageFile f;
    try {
      f = open_image_for_write(dir / "proc.img", true);
    } catch (const Error&) {
      return 10;
    }
    if (!f.nameless) return 11;
    // New credentials without CAP_DAC_READ_SEARCH: linking by descriptor is refused (ENOENT),
    // whether the kernel wants that capability or the credentials that opened the file.
    __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2]{};
    if (::syscall(SYS_capget, &h, d) != 0) return 77;
    d[0].effective &= ~(1u << CAP_DAC_READ_SEARCH);
    if (::syscall(SYS_capset, &h, d) != 0) return 77;
    if (::linkat(f.fd.get(), "", f.dir.get(), "probe", AT_EMPTY_PATH) == 0 || errno != ENOENT) return 77;
    if (::pwrite(f.fd.get(), "data", 4, 0) != 4) return 12;
    try {
      name_created(f, dir / "proc.img");
    } catch (const Error&) {
      return 13;
    }
    return listing(dir.path()) == std::vector<std::string>{"proc.img"} ? 0 : 14;
  });
  if (r == 77) return;
  CHECK_EQ(r, 0);
}
