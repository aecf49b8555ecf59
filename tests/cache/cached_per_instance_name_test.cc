// kiln::cached_per_instance: the public name (TensorFlow's) of CachedPerInstance. The same type,
// so one test of the name, its semantics through it, and the type identity.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <type_traits>

#include "kiln/cache.h"
#include "kiln/error.h"

namespace kiln {
namespace {

struct Layerish {
  InstanceToken token;
  uint64_t version = 0;
};

TEST(CachedPerInstanceName, IsTheClassItWraps) {
  static_assert(std::is_same_v<cached_per_instance<int>, CachedPerInstance<int>>);
  cached_per_instance<std::string> cache("test.public_name");
  EXPECT_EQ(cache.stats().name, "test.public_name");
}

TEST(CachedPerInstanceName, OncePerLiveObjectEmptyResultsVersions) {
  cached_per_instance<std::string> cache("test.public_name.semantics");
  auto a = std::make_unique<Layerish>();
  int calls = 0;
  auto empty = [&] { return ++calls, std::string(); };
  EXPECT_EQ(cache.get(a->token, empty, a->version), "");
  EXPECT_EQ(cache.get(a->token, empty, a->version), "");
  EXPECT_EQ(calls, 1);  // the empty result is cached
  a->version = 1;
  EXPECT_EQ(cache.get(
                a->token, [&] { return ++calls, std::string("v1"); }, a->version),
            "v1");
  EXPECT_EQ(cache.stats().version_recomputes, 1u);
  a.reset();
  EXPECT_EQ(cache.stats().entries, 0u);  // gone with its object
  EXPECT_EQ(cache.stats().expirations, 1u);
}

TEST(CachedPerInstanceName, ReentrantComputeIsAStateError) {
  cached_per_instance<int> cache("test.public_name.reentrant");
  Layerish a;
  try {
    cache.get(a.token, [&] { return cache.get(a.token, [] { return 1; }); });
    FAIL() << "expected StateError";
  } catch (const StateError& e) {
    EXPECT_NE(std::string(e.what()).find("test.public_name.reentrant"), std::string::npos);
  }
}

}  // namespace
}  // namespace kiln
