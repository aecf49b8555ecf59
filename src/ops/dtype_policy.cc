#include "kiln/dtype_policy.h"

#include <cpuid.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <string>

#include "kiln/error.h"
#include "ops/dtype_policy.h"

namespace kiln {
namespace detail {

std::atomic<bool> g_mixed_bf16{false};

namespace {
std::string g_testing_reason;

// CPUID leaf 7: AVX512_BF16 is subleaf 1 EAX bit 5, AMX-BF16 subleaf 0 EDX bit 22.
bool cpu_has(unsigned subleaf, int reg, unsigned bit) {
  unsigned r[4] = {};
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, subleaf, r[0], r[1], r[2], r[3]);
  return (r[reg] >> bit) & 1u;
}

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "another ISA";
  }
}
}  // namespace

void set_bf16_unsupported_for_testing(const char* reason) { g_testing_reason = reason; }

}  // namespace detail

std::string bf16_unsupported_reason() {
  if (!detail::g_testing_reason.empty()) return detail::g_testing_reason;
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  const auto bits = static_cast<unsigned>(isa),
             bf16 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_bf16);
  if ((bits & bf16) == bf16) return "";
  const bool avx512_bf16 = detail::cpu_has(1, 0, 5), amx_bf16 = detail::cpu_has(0, 3, 22);
  if (avx512_bf16 || amx_bf16) {
    return std::string("this CPU has ") + (avx512_bf16 ? "AVX512_BF16" : "AMX-BF16") +
           " but oneDNN is limited to " + detail::isa_name(isa) +
           " (DNNL_MAX_CPU_ISA?), so it lacks AVX512_BF16 and AMX-BF16 here";
  }
  return std::string("this CPU lacks AVX512_BF16 and AMX-BF16 (oneDNN's ISA here is ") +
         detail::isa_name(isa) + ")";
}

const char* dtype_policy_name(DTypePolicy policy) {
  return policy == DTypePolicy::kMixedBfloat16 ? "mixed_bfloat16" : "float32";
}

void set_dtype_policy(DTypePolicy policy) {
  if (policy == DTypePolicy::kMixedBfloat16) {
    const std::string why = bf16_unsupported_reason();
    if (!why.empty()) {
      throw ValueError("set_dtype_policy(\"mixed_bfloat16\"): " + why +
                       ": bfloat16 matmul/conv would be emulated, slower than float32; use "
                       "\"float32\"");
    }
  }
  detail::g_mixed_bf16.store(policy == DTypePolicy::kMixedBfloat16);
}

void set_dtype_policy(std::string_view name) {
  if (name == "float32") return set_dtype_policy(DTypePolicy::kFloat32);
  if (name == "mixed_bfloat16") return set_dtype_policy(DTypePolicy::kMixedBfloat16);
  throw ValueError("set_dtype_policy: unknown policy '" + std::string(name) +
                   "' (expected \"float32\" or \"mixed_bfloat16\")");
}

DTypePolicy dtype_policy_kind() {
  return detail::mixed_bf16() ? DTypePolicy::kMixedBfloat16 : DTypePolicy::kFloat32;
}

const char* dtype_policy() { return dtype_policy_name(dtype_policy_kind()); }

}  // namespace kiln
