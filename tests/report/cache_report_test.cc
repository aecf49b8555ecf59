// cache_report(), Layer/VariableStore cache_info(): what they list, that a destroyed model's
// entries are gone, and the text and JSON forms.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <set>
#include <string>

#include "cache/registry.h"
#include "kiln/cache.h"
#include "kiln/cache_report.h"
#include "kiln/function.h"
#include "kiln/nn/layers.h"
#include "kiln/nn/model.h"
#include "kiln/nn/variable_store.h"
#include "kiln/ops.h"

namespace kiln {
namespace {

uint64_t conv_entries() {
  uint64_t n = 0;
  for (const CacheStats& s : cache_report().instances) {
    if (s.name.rfind("conv2d filter", 0) == 0) n += s.entries;
  }
  return n;
}

bool lists_variable(const CacheReport& r, const std::string& prefix) {
  for (const VariableInfo& v : r.variables.list) {
    if (v.name.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

std::shared_ptr<Sequential> small_cnn(VariableStore& store, const std::string& name) {
  auto m = std::make_shared<Sequential>(name);
  m->set_store(store);
  m->emplace<Conv2D>(32, std::array<int64_t, 2>{3, 3});
  m->emplace<Conv2D>(32, std::array<int64_t, 2>{3, 3});
  m->emplace<Flatten>();
  m->emplace<Dense>(4);
  return m;
}

TEST(CacheReport, DestroyingAModelFreesEveryEntryThatBelongedToIt) {
  const uint64_t conv_before = conv_entries();
  {
    auto store = std::make_unique<VariableStore>(3);
    auto model = small_cnn(*store, "doomed");
    Tensor x = random_uniform({2, 9, 9, 16}, 0, 1, 1);
    (*model)(x);
    model->summary();
    LayerCacheInfo info = model->cache_info();
    EXPECT_EQ(info.variables, 6u);
    bool has_summary = false, has_filter = false;
    for (const auto& e : info.entries) {
      has_summary = has_summary || (e.cache == "Model::summary" && e.object == "doomed");
      has_filter = has_filter || e.object == "doomed/conv2d/kernel" ||
                   e.object.find("/kernel") != std::string::npos;
    }
    EXPECT_TRUE(has_summary);
    EXPECT_TRUE(has_filter);
    EXPECT_GT(info.entry_bytes, 0u);
    EXPECT_GE(conv_entries(), conv_before + 2);  // both filters, in oneDNN's layout
    EXPECT_TRUE(lists_variable(cache_report(), "doomed/"));
    model.reset();
    store.reset();  // the variables lived in the store: they, and their entries, go now
  }
  EXPECT_EQ(conv_entries(), conv_before);
  const CacheReport r = cache_report();
  EXPECT_FALSE(lists_variable(r, "doomed/"));
  for (const CacheStats& s : r.instances) {
    if (s.name == "Model::summary") {
      EXPECT_GE(s.expirations, 1u);
    }
  }
}

TEST(CacheReport, VariablesSharedByOwner) {
  VariableStore store(5);
  DenseOptions oa, ob;
  oa.name = "share_a";
  ob.name = "share_b";
  Dense a(3, oa);
  Dense b(3, ob);
  a.set_store(store);
  b.set_store(store);
  b.share_weights_from(a);
  a(ones({1, 2}));
  b(ones({1, 2}));
  VariablesSection s = store.cache_info();
  EXPECT_EQ(s.count, 2u);  // kernel and bias, once
  EXPECT_EQ(s.shared, 2u);
  EXPECT_EQ(s.bytes, (2u * 3 + 3) * 4);
  ASSERT_EQ(s.by_owner.count("share_a"), 1u);
  EXPECT_EQ(s.by_owner.at("share_a").first, 2u);
  for (const VariableInfo& v : s.list) {
    EXPECT_EQ(std::set<std::string>(v.layers.begin(), v.layers.end()),
              (std::set<std::string>{"share_a", "share_b"}))
        << v.name;
  }
}

TEST(CacheReport, FunctionsAreListedWhileTheyLive) {
  auto count = [](const std::string& name) {
    int n = 0;
    for (const FunctionSection& f : cache_report().functions) n += f.name == name;
    return n;
  };
  {
    Function f = function([](const Tensor& x) { return relu(x + 1.0); }, {.name = "reported"});
    f(ones({2, 3}));
    f(ones({2, 3}));
    f(ones({4, 3}));
    const CacheReport r = cache_report();
    const FunctionSection* mine = nullptr;
    for (const FunctionSection& s : r.functions) {
      if (s.name == "reported") mine = &s;
    }
    ASSERT_NE(mine, nullptr);
    EXPECT_EQ(mine->info.traces, 2u);
    EXPECT_EQ(mine->info.hits, 1u);
    EXPECT_EQ(mine->info.misses, 2u);
    EXPECT_EQ(mine->info.signatures.size(), 2u);
    EXPECT_EQ(mine->info.last_retrace_reason, "arg 0: shape [2, 3] -> [4, 3]");
    int folded = 0;
    for (const FoldedConstantsSection& c : r.folded_constants) {
      if (c.function == "reported") {
        ++folded;
        EXPECT_GE(c.constants, 1u);  // the folded 1.0
        EXPECT_GE(c.bytes, 4u);
      }
    }
    EXPECT_EQ(folded, 2);
    EXPECT_EQ(count("reported"), 1);
  }
  EXPECT_EQ(count("reported"), 0);
}

TEST(CacheReport, ArenasRegisteredByTheExecutorAreListedAndCleared) {
  // The graph executor registers its arenas through src/cache/registry.h; here by hand.
  auto has = [](const CacheReport& r, uint64_t bytes) {
    for (const ArenaInfo& a : r.arenas) {
      if (a.owner == "test arena") return a.bytes == bytes;
    }
    return false;
  };
  uint64_t held = 4096;
  {
    cache::Registration reg = cache::register_arena(
        [&] {
          return ArenaInfo{"test arena", held, 8192, 3};
        },
        [&] { held = 0; });
    const CacheReport r = cache_report();
    EXPECT_TRUE(has(r, 4096));
    EXPECT_GE(r.cache_bytes(), 4096u);
    EXPECT_NE(r.to_text().find("test arena"), std::string::npos);
    clear_caches();
    EXPECT_EQ(held, 0u);
    EXPECT_TRUE(has(cache_report(), 0));
  }
  for (const ArenaInfo& a : cache_report().arenas) EXPECT_NE(a.owner, "test arena");
}

TEST(CacheReport, JsonHasExactlyTheDocumentedKeys) {
  InstanceToken t;
  CachedPerInstance<int> c("report.json");
  c.get(t, [] { return 1; });
  nlohmann::json j = nlohmann::json::parse(cache_report().to_json());
  std::set<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.insert(it.key());
  EXPECT_EQ(keys, (std::set<std::string>{"variables", "functions", "folded_constants", "instances",
                                         "kernels", "arenas", "allocator"}));
  bool found = false;
  for (const auto& inst : j["instances"]) {
    if (inst["name"] == "report.json") {
      found = true;
      EXPECT_EQ(inst["entries"], 1);
      EXPECT_EQ(inst["misses"], 1);
      EXPECT_TRUE(inst["limits"].contains("max_entries"));
    }
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(j["variables"].contains("by_owner"));
  EXPECT_TRUE(j["kernels"].contains("primitives"));
  EXPECT_TRUE(j["allocator"].contains("cached_bytes"));
}

TEST(CacheReport, TextHasEverySection) {
  const std::string t = cache_report().to_text();
  for (const char* section :
       {"Variables: ", "Functions: ", "Folded constants: ", "Per-instance caches: ",
        "Kernels (oneDNN primitives): ", "Arenas: ", "Allocator: ", "Cache bytes in all: "}) {
    EXPECT_NE(t.find(section), std::string::npos) << section << " in\n" << t;
  }
}

}  // namespace
}  // namespace kiln
