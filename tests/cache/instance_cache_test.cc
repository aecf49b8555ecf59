// cached_per_instance: computed state, identity, versions, invalidation, limits, errors.
#include <gtest/gtest.h>

#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>

#include "kiln/cache.h"
#include "kiln/error.h"

namespace kiln {
namespace {

struct Obj {
  InstanceToken token;
  int value = 0;
};

TEST(CachedPerInstance, ComputesOnceThenHits) {
  CachedPerInstance<int> cache("test.once");
  Obj a;
  a.value = 7;
  int calls = 0;
  auto f = [&] { return ++calls, a.value * 2; };
  EXPECT_EQ(cache.get(a.token, f), 14);
  EXPECT_EQ(cache.get(a.token, f), 14);
  EXPECT_EQ(cache.get(a.token, f), 14);
  EXPECT_EQ(calls, 1);
  CacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.name, "test.once");
}

TEST(CachedPerInstance, EmptyResultsAreCachedToo) {
  CachedPerInstance<std::optional<int>> none("test.empty_optional");
  CachedPerInstance<std::string> empty("test.empty_string");
  Obj a;
  int calls = 0;
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(none.get(a.token, [&] { return ++calls, std::optional<int>(); }).has_value());
    EXPECT_EQ(empty.get(a.token, [&] { return ++calls, std::string(); }), "");
  }
  EXPECT_EQ(calls, 2);  // TensorFlow's helper recomputed a None result on every call
  EXPECT_EQ(none.stats().hits, 2u);
}

TEST(CachedPerInstance, EntryDiesWithItsObject) {
  CachedPerInstance<std::string> cache("test.dies");
  auto a = std::make_unique<Obj>();
  auto b = std::make_unique<Obj>();
  cache.get(a->token, [] { return std::string(1000, 'a'); });
  cache.get(b->token, [] { return std::string(10, 'b'); });
  EXPECT_EQ(cache.stats().entries, 2u);
  EXPECT_GE(cache.stats().bytes, 1000u);  // a string reports its capacity
  a.reset();
  CacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.expirations, 1u);
  EXPECT_LT(s.bytes, 1000u);
  b.reset();
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().bytes, 0u);
}

TEST(CachedPerInstance, NewObjectAtADestroyedOnesAddressNeverSeesItsEntry) {
  CachedPerInstance<int> cache("test.address_reuse");
  alignas(Obj) unsigned char buf[sizeof(Obj)];
  for (int i = 0; i < 100; ++i) {
    Obj* o = new (buf) Obj;  // the same address every time
    o->value = i;
    EXPECT_EQ(cache.get(o->token, [&] { return o->value; }), i) << "round " << i;
    EXPECT_EQ(cache.get(o->token, [&] { return -1; }), i);  // a hit for the live object
    o->~Obj();
  }
  EXPECT_EQ(cache.stats().misses, 100u);
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(CachedPerInstance, CopiesAndResetAreNewIdentities) {
  CachedPerInstance<int> cache("test.copies");
  Obj a;
  a.value = 1;
  cache.get(a.token, [&] { return a.value; });
  Obj b = a;  // copies the object; its token is a new identity
  b.value = 2;
  EXPECT_EQ(cache.get(b.token, [&] { return b.value; }), 2);
  EXPECT_NE(a.token.id(), b.token.id());
  const uint64_t old = a.token.id();
  a.token.reset();
  EXPECT_FALSE(a.token.used());
  EXPECT_NE(a.token.id(), old);
  EXPECT_EQ(cache.get(a.token, [] { return 3; }), 3);
}

TEST(CachedPerInstance, VersionBumpRecomputesAndUnchangedVersionDoesNot) {
  CachedPerInstance<int> cache("test.version");
  Obj a;
  uint64_t version = 0;
  int calls = 0;
  auto f = [&] { return ++calls, static_cast<int>(version) * 10; };
  EXPECT_EQ(cache.get(a.token, f, version), 0);
  EXPECT_EQ(cache.get(a.token, f, version), 0);
  EXPECT_EQ(calls, 1);
  version = 1;
  EXPECT_EQ(cache.get(a.token, f, version), 10);
  EXPECT_EQ(cache.get(a.token, f, version), 10);
  EXPECT_EQ(calls, 2);
  CacheStats s = cache.stats();
  EXPECT_EQ(s.version_recomputes, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.entries, 1u);
}

TEST(CachedPerInstance, InvalidateAndClear) {
  CachedPerInstance<int> cache("test.invalidate");
  Obj a, b;
  int calls = 0;
  auto f = [&] { return ++calls; };
  cache.get(a.token, f);
  cache.get(b.token, f);
  cache.invalidate(a.token);
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.get(a.token, f), 3);  // recomputed
  EXPECT_EQ(cache.get(b.token, f), 2);  // untouched
  cache.clear();
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().invalidations, 3u);
  EXPECT_EQ(cache.get(b.token, f), 4);
  Obj never_used;
  cache.invalidate(never_used.token);  // no id assigned: nothing to do
  EXPECT_FALSE(never_used.token.used());
}

TEST(CachedPerInstance, EntryLimitEvictsLeastRecentlyUsedAndCounts) {
  CachedPerInstance<int> cache("test.lru", {3, 0});
  Obj o[4];
  for (int i = 0; i < 3; ++i) cache.get(o[i].token, [&] { return i; });
  cache.get(o[0].token, [] { return -1; });  // o[0] is now the most recently used
  cache.get(o[3].token, [] { return 3; });   // evicts o[1], the least recently used
  CacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 3u);
  EXPECT_EQ(s.evictions, 1u);
  int v = -2;
  EXPECT_TRUE(cache.peek(o[0].token, 0, v));
  EXPECT_EQ(v, 0);
  EXPECT_FALSE(cache.peek(o[1].token, 0, v));
  EXPECT_TRUE(cache.peek(o[2].token, 0, v));
  EXPECT_TRUE(cache.peek(o[3].token, 0, v));
  cache.set_limits({1, 0});  // shrinking evicts at once, oldest first
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.stats().evictions, 3u);
  EXPECT_TRUE(cache.peek(o[3].token, 0, v));
}

struct Blob {
  uint64_t n = 0;
  uint64_t cache_bytes() const { return n; }
};

TEST(CachedPerInstance, ByteLimitEvictsLeastRecentlyUsed) {
  CachedPerInstance<Blob> cache("test.bytes", {100, 1000});
  Obj o[4];
  for (int i = 0; i < 3; ++i) cache.get(o[i].token, [] { return Blob{400}; });
  CacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 2u);  // 3 x 400 > 1000: the first went
  EXPECT_EQ(s.bytes, 800u);
  EXPECT_EQ(s.evictions, 1u);
  // A value larger than the whole limit is returned but not kept.
  EXPECT_EQ(cache.get(o[3].token, [] { return Blob{5000}; }).n, 5000u);
  EXPECT_LE(cache.stats().bytes, 1000u);
}

TEST(CachedPerInstance, AThrowingComputeCachesNothing) {
  CachedPerInstance<int> cache("test.throws");
  Obj a;
  EXPECT_THROW(cache.get(a.token, []() -> int { throw std::runtime_error("boom"); }),
               std::runtime_error);
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.get(a.token, [] { return 5; }), 5);
}

TEST(CachedPerInstance, ComputeAskingForItselfIsAStateError) {
  CachedPerInstance<int> cache("test.recursive");
  Obj a;
  try {
    cache.get(a.token, [&] { return cache.get(a.token, [] { return 1; }); });
    FAIL() << "expected StateError";
  } catch (const StateError& e) {
    EXPECT_NE(std::string(e.what()).find("cache 'test.recursive'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("wait for itself"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache.stats().entries, 0u);
}

TEST(CachedPerInstance, ZeroEntryLimitIsAValueError) {
  try {
    CachedPerInstance<int> cache("test.zero", {0, 10});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("cache 'test.zero': max_entries must be >= 1"),
              std::string::npos)
        << e.what();
  }
  CachedPerInstance<int> ok("test.zero_later");
  EXPECT_THROW(ok.set_limits({0, 0}), ValueError);
  EXPECT_THROW(set_instance_cache_limits({0, 0}), ValueError);
}

TEST(CachedPerInstance, ProcessDefaultsApplyToLiveAndLaterCaches) {
  const CacheLimits saved = instance_cache_limits();
  CachedPerInstance<int> live("test.defaults");
  Obj o[3];
  for (auto& x : o) live.get(x.token, [] { return 1; });
  set_instance_cache_limits({2, 0});
  EXPECT_EQ(live.stats().entries, 2u);
  CachedPerInstance<int> later("test.defaults_later");
  EXPECT_EQ(later.stats().limits.max_entries, 2u);
  set_instance_cache_limits(saved);
  EXPECT_EQ(live.stats().limits.max_entries, saved.max_entries);
}

// A value that owns an object with cached entries of its own: dropping the value (clear,
// clear_caches, expiry of its key object, new limits) expires the inner object's entries too,
// and never deadlocks on the registry.
TEST(CachedPerInstance, ValuesOwningCachedObjectsAreDroppedCleanly) {
  CachedPerInstance<std::shared_ptr<Obj>> outer("test.outer");
  CachedPerInstance<int> inner("test.inner");
  auto fill = [&](Obj& key) {
    auto owned = outer.get(key.token, [] { return std::make_shared<Obj>(); });
    inner.get(owned->token, [] { return 1; });
  };
  Obj a, b, c;
  fill(a);
  EXPECT_EQ(inner.stats().entries, 1u);
  outer.clear();
  EXPECT_EQ(inner.stats().entries, 0u);
  fill(a);
  clear_caches();
  EXPECT_EQ(inner.stats().entries, 0u);
  {
    Obj dying;
    fill(dying);
    EXPECT_EQ(inner.stats().entries, 1u);
  }
  EXPECT_EQ(inner.stats().entries, 0u);
  fill(b);
  fill(c);
  const CacheLimits saved = instance_cache_limits();
  set_instance_cache_limits({1, 0});  // evicts b's value, which frees its object
  EXPECT_EQ(inner.stats().entries, 1u);
  set_instance_cache_limits(saved);
}

}  // namespace
}  // namespace kiln
