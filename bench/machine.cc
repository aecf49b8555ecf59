// bench/machine.cc -- see machine.h.
#include "machine.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>
#include <fstream>

namespace kiln_bench {

namespace {

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  std::size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string proc_cpuinfo_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, 10, "model name") == 0) {
      std::size_t colon = line.find(':');
      if (colon != std::string::npos) return trim(line.substr(colon + 1));
    }
  }
  return "";
}

// CPUID leaves 0x80000002..4: the 48-byte processor brand string.
std::string cpuid_brand() {
  unsigned regs[12] = {};
  if (__get_cpuid_max(0x80000000u, nullptr) < 0x80000004u) return "";
  for (unsigned i = 0; i < 3; ++i) {
    __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2],
                &regs[4 * i + 3]);
  }
  char s[49] = {};
  std::memcpy(s, regs, 48);
  return trim(s);
}

std::string describe_cpu() {
  std::string proc = proc_cpuinfo_model();
  std::string brand = cpuid_brand();
  std::string d = proc.empty()                        ? (brand.empty() ? "unknown" : brand)
                  : (!brand.empty() && brand != proc) ? proc + " [cpuid: " + brand + "]"
                                                      : proc;
  // Printed inside JSON strings by the programs: no quotes or backslashes.
  d.erase(std::remove_if(d.begin(), d.end(), [](char ch) { return ch == '"' || ch == '\\'; }),
          d.end());
  return d;
}

}  // namespace

const std::string& cpu_model() {
  static const std::string model = describe_cpu();
  return model;
}

const char* cpu_isa() {
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0). The init
  // call makes it safe from static initializers, which may run before libgcc's own.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2+fma";
  return "sse2";
}

}  // namespace kiln_bench
