#include <sys/stat.h>

#include <cstring>
#include <string>

#include "tests/harness.h"
#include "tests/temp_dir.h"
#include "volume/cow_format.h"
#include "volume/cow_map.h"

using namespace blocksnap;
using namespace testing_support;

namespace {

constexpr uint64_t kPageGranules = kCowMapPageSize * 8;

}  // namespace

// A map's clear pages are holes in its file: opening reads only the pages written, and finds
// exactly their bits, wherever they lie (first granule, a page in the middle, the last granule).
TEST(cow_map_reopened_holds_the_bits_of_its_written_pages_between_holes) {
  TempDir dir;
  const std::string path = dir / "m.map";
  const uint64_t size = uint64_t{64} << 30;  // 16 Mi granules: a bitmap of 512 pages
  const uint64_t last = cow_granule_count(size) - 1;
  const uint64_t middle = 200 * kPageGranules + 5;
  CowMap::create(path, size, "layer-1");
  {
    CowMap m(path, size, true);
    for (uint64_t g : {uint64_t{0}, middle, last}) CHECK(m.set(g));
    m.write_pages(m.take_dirty_pages());
  }
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < cow_bitmap_bytes(last + 1) / 4);  // mostly hole
  CowMap m(path, size, false);
  CHECK_EQ(m.set_count(), 3u);
  for (uint64_t g : {uint64_t{0}, middle, last}) CHECK(m.test(g));
  for (uint64_t g : {uint64_t{1}, middle - 1, middle + 1, last - 1}) CHECK(!m.test(g));
  CHECK(!m.any_set(1, middle));
  CHECK(m.any_set(1, middle + 1));
  CHECK(!m.any_set(middle + 1, last));
  CHECK(m.any_set(middle + 1, last + 1));
}
