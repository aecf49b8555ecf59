#include "core/storage.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>

#include "core/adopted_storage.h"

namespace kiln::detail {
namespace {

struct Released {
  int calls = 0;
  std::thread::id thread;
};

void count_release(void* context) noexcept {
  auto* r = static_cast<Released*>(context);
  r->calls++;
  r->thread = std::this_thread::get_id();
}

TEST(Storage, NewIsAlignedAndOwned) {
  Storage* s = storage_new(100);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(s->data) % 64, 0u);
  EXPECT_EQ(s->nbytes, 100u);
  EXPECT_GE(s->capacity, 100u);
  EXPECT_FALSE(storage_is_adopted(s));
  storage_unref(s);
}

TEST(Storage, AdoptReleasesOnceWhenTheLastReferenceGoes) {
  alignas(8) unsigned char buffer[48] = {};
  Released r;
  Storage* s = storage_adopt(buffer, sizeof buffer, &count_release, &r);
  EXPECT_EQ(s->data, buffer);
  EXPECT_EQ(s->nbytes, sizeof buffer);
  EXPECT_TRUE(storage_is_adopted(s));
  storage_ref(s);
  storage_unref(s);
  EXPECT_EQ(r.calls, 0);
  storage_unref(s);
  EXPECT_EQ(r.calls, 1);
}

TEST(Storage, AdoptedMemoryIsNeverCached) {
  allocator_trim();
  const AllocatorStats before = allocator_stats();
  unsigned char buffer[4096];
  Released r;
  storage_unref(storage_adopt(buffer, sizeof buffer, &count_release, &r));
  EXPECT_EQ(r.calls, 1);
  const AllocatorStats after = allocator_stats();
  EXPECT_EQ(after.cached_buffers, before.cached_buffers);  // not handed out as kiln's memory
  EXPECT_EQ(after.cached_bytes, before.cached_bytes);
  // Owned storages made and freed after it never call it again.
  storage_unref(storage_new(64));
  EXPECT_EQ(r.calls, 1);
}

TEST(Storage, AdoptReleasesOnTheThreadDroppingTheLastReference) {
  float value = 1;
  Released r;
  Storage* s = storage_adopt(&value, sizeof value, &count_release, &r);
  std::thread t([s] { storage_unref(s); });
  const std::thread::id dropper = t.get_id();
  t.join();
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(r.thread, dropper);
}

TEST(Storage, AdoptEmpty) {
  Released r;
  storage_unref(storage_adopt(nullptr, 0, &count_release, &r));
  EXPECT_EQ(r.calls, 1);
}

}  // namespace
}  // namespace kiln::detail
