// After the first call, a Function call allocates no heap memory: malloc and its relatives
// (which operator new, std::aligned_alloc and oneDNN all end in) are interposed in this test
// program and counted while 100 cache hits of the mlp and of the cnn run.
//
// One exception is counted apart: oneDNN's C entry point dnnl_primitive_execute copies its
// argument array into a std::unordered_map on every call (oneDNN 2.6, src/common/primitive.cpp),
// a few allocations per primitive run that no caller can avoid. dnnl_primitive_execute is
// interposed too, so allocations inside it are attributed to oneDNN; everything else (kiln's
// executor, kernels, Function's lookup) must allocate nothing.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "kiln/function.h"
#include "kiln/nn/models.h"
#include "kiln/ops.h"
#include "kiln/threading.h"
#include "testing/op_check.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KILN_COUNT_MALLOC 0  // the sanitizers own malloc (gcc's macros)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define KILN_COUNT_MALLOC 0  // clang's
#else
#define KILN_COUNT_MALLOC 1
#endif
#else
#define KILN_COUNT_MALLOC 1
#endif

namespace {
std::atomic<bool> g_counting{false};
std::atomic<uint64_t> g_allocs{0};         // outside oneDNN's execute
std::atomic<uint64_t> g_onednn_allocs{0};  // inside it
std::atomic<uint64_t> g_onednn_runs{0};
// Not thread-local: while a primitive runs, its OpenMP workers allocate on its behalf (and
// kiln runs nothing concurrently with a primitive: execution is synchronous).
std::atomic<int> g_in_onednn{0};
inline void count() {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  (g_in_onednn.load() ? g_onednn_allocs : g_allocs).fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#if KILN_COUNT_MALLOC
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);

void* malloc(size_t n) {
  count();
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t s) {
  count();
  return __libc_calloc(n, s);
}
void* realloc(void* p, size_t n) {
  count();
  return __libc_realloc(p, n);
}
void* memalign(size_t a, size_t n) {
  count();
  return __libc_memalign(a, n);
}
void* aligned_alloc(size_t a, size_t n) {
  count();
  return __libc_memalign(a, n);
}
int posix_memalign(void** p, size_t a, size_t n) {
  count();
  *p = __libc_memalign(a, n);
  return *p ? 0 : ENOMEM;
}
void free(void* p) { __libc_free(p); }

dnnl_status_t dnnl_primitive_execute(const_dnnl_primitive_t p, dnnl_stream_t s, int n,
                                     const dnnl_exec_arg_t* args) {
  using Fn = dnnl_status_t (*)(const_dnnl_primitive_t, dnnl_stream_t, int, const dnnl_exec_arg_t*);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "dnnl_primitive_execute"));
  if (g_counting.load(std::memory_order_relaxed)) g_onednn_runs.fetch_add(1);
  ++g_in_onednn;
  const dnnl_status_t r = real(p, s, n, args);
  --g_in_onednn;
  return r;
}
}
#endif

namespace kiln {
namespace {

// Allocations outside oneDNN's execute during 100 hits of f on x, each writing into the same
// outs. Prints oneDNN's own share.
uint64_t allocations_over_hits(Function& f, const Tensor& x) {
  Tensor out[1];
  f.call({&x, 1}, out);  // first call: trace, passes, plan, first run
  f.call({&x, 1}, out);  // the out now fits: written in place from here on
  g_allocs = 0;
  g_onednn_allocs = 0;
  g_onednn_runs = 0;
  g_counting = true;
  for (int i = 0; i < 100; ++i) f.call({&x, 1}, out);
  g_counting = false;
  if (g_onednn_runs) {
    std::printf("  100 hits: %llu oneDNN primitive runs, %.1f allocations inside each\n",
                static_cast<unsigned long long>(g_onednn_runs.load()),
                static_cast<double>(g_onednn_allocs.load()) / g_onednn_runs.load());
    // oneDNN's share is its fixed per-run argument map: a few, never growing with the calls.
    EXPECT_LE(g_onednn_allocs.load(), 10 * g_onednn_runs.load());
  }
  return g_allocs.load();
}

class AllocFree : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KILN_COUNT_MALLOC) GTEST_SKIP() << "malloc is the sanitizer's in this build";
  }
};

TEST_F(AllocFree, TheCounterSeesAllocations) {
  g_allocs = 0;
  g_counting = true;
  Tensor t = ones({1000});  // a fresh size: the storage cache cannot serve it
  std::vector<int>* v = new std::vector<int>(3);
  g_counting = false;
  delete v;
  EXPECT_GE(g_allocs.load(), 2u);
}

TEST_F(AllocFree, MlpHitsAllocateNothing) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::shared_ptr<Sequential> m = make_mlp(nullptr);
    Function f = function([&](const Tensor& x) { return (*m)(x); });
    Tensor x = testing::random_tensor({1, 28, 28, 1});
    EXPECT_EQ(allocations_over_hits(f, x), 0u) << threads << " threads";
    Tensor out[1];
    f.call({&x, 1}, out);
    EXPECT_TRUE(testing::all_close(out[0], (*m)(x)));
    EXPECT_EQ(f.cache_info().traces, 1u);
  }
}

TEST_F(AllocFree, CnnHitsAllocateNothing) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::shared_ptr<Sequential> m = make_cnn(nullptr);
    Function f = function([&](const Tensor& x) { return (*m)(x); });
    Tensor x = testing::random_tensor({2, 28, 28, 1});
    EXPECT_EQ(allocations_over_hits(f, x), 0u) << threads << " threads";
    Tensor out[1];
    f.call({&x, 1}, out);
    EXPECT_TRUE(testing::all_close(out[0], (*m)(x), 1e-5, 1e-5));
  }
}

TEST_F(AllocFree, ElementwiseChainHitsAllocateNothing) {
  Function f = function([](const Tensor& x) { return tanh(relu(x * 2.0 + 1.0)) - x; });
  EXPECT_EQ(allocations_over_hits(f, testing::random_tensor({33, 17})), 0u);
}

}  // namespace
}  // namespace kiln
