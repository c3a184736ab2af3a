#include <chrono>
#include <vector>

#include "core/aligned_buffer.h"
#include "tests/harness.h"

using namespace blocksnap;

namespace {

constexpr size_t kBlock = 4 * 1024 * 1024;

}  // namespace

TEST(aligned_buffer_takes_back_a_freed_huge_buffer) {
  const uint8_t* first;
  {
    AlignedBuffer a(kBlock);
    first = a.data();
  }
  const size_t pooled = AlignedBuffer::pooled_bytes();
  CHECK(pooled >= kBlock);
  AlignedBuffer b(kBlock);
  CHECK(b.data() == first);  // the most recently freed of its size
  CHECK_EQ(AlignedBuffer::pooled_bytes(), pooled - kBlock);
}

TEST(aligned_buffer_pool_keeps_no_more_than_its_cap) {
  {
    std::vector<AlignedBuffer> many;
    for (size_t i = 0; i < AlignedBuffer::kMaxPooledBytes / kBlock + 4; ++i) many.emplace_back(kBlock);
  }
  // Full, give or take one buffer of another size held from before.
  CHECK(AlignedBuffer::pooled_bytes() <= AlignedBuffer::kMaxPooledBytes);
  CHECK(AlignedBuffer::pooled_bytes() > AlignedBuffer::kMaxPooledBytes - 2 * kBlock);
}

TEST(aligned_buffer_pool_keeps_the_most_recently_freed_sizes) {
  {
    std::vector<AlignedBuffer> old;
    for (size_t i = 0; i < AlignedBuffer::kMaxPooledBytes / kBlock; ++i) old.emplace_back(kBlock);
  }
  const uint8_t* newest;
  {
    AlignedBuffer frame(kBlock + 4096);  // another size, freed last
    newest = frame.data();
  }
  CHECK(AlignedBuffer::pooled_bytes() <= AlignedBuffer::kMaxPooledBytes);
  AlignedBuffer again(kBlock + 4096);
  CHECK(again.data() == newest);
}

TEST(aligned_buffer_small_buffers_are_not_pooled) {
  const size_t pooled = AlignedBuffer::pooled_bytes();
  { AlignedBuffer small(64 * 1024); }
  CHECK_EQ(AlignedBuffer::pooled_bytes(), pooled);
}

TEST(aligned_buffer_reserve_within_its_page_rounded_capacity_keeps_the_memory) {
  AlignedBuffer a(kBlock + 64);  // a capacity of kBlock + 4 KiB
  const uint8_t* p = a.data();
  a.reserve(kBlock + 4096);
  CHECK(a.data() == p);
  CHECK_EQ(a.size(), kBlock + 4096);
  a.reserve(kBlock + 4097);
  CHECK_EQ(a.size(), kBlock + 4097);
}

TEST(aligned_buffer_huge_buffers_start_on_a_huge_page_boundary) {
  AlignedBuffer a(kBlock + 4096);
  CHECK_EQ(reinterpret_cast<uintptr_t>(a.data()) % (2 * 1024 * 1024), uintptr_t{0});
  a.data()[kBlock + 4095] = 1;  // the whole size is mapped
}

TEST(aligned_buffer_pool_left_idle_unmaps_every_buffer) {
  { AlignedBuffer a(kBlock); }
  REQUIRE(AlignedBuffer::pooled_bytes() >= kBlock);
  CHECK(AlignedBuffer::release_pool_if_idle(std::chrono::seconds{0}) >= kBlock);
  CHECK_EQ(AlignedBuffer::pooled_bytes(), size_t{0});
}

TEST(aligned_buffer_pool_in_use_keeps_its_buffers) {
  { AlignedBuffer a(kBlock); }
  const size_t pooled = AlignedBuffer::pooled_bytes();
  REQUIRE(pooled >= kBlock);
  CHECK_EQ(AlignedBuffer::release_pool_if_idle(std::chrono::hours{1}), size_t{0});
  CHECK_EQ(AlignedBuffer::pooled_bytes(), pooled);
}
