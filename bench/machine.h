// bench/machine.h -- the CPU a benchmark ran on, so every figure can name it.
//
// Plain C++17 with no dependencies: the LibTorch peers (C++17) use it too.
#pragma once

#include <string>

namespace kiln_bench {

// The first "model name" line of /proc/cpuinfo (e.g. "AMD EPYC"), or "unknown". When the CPUID
// brand string differs from it (as under qemu-x86_64, which passes the host's /proc/cpuinfo
// through but emulates CPUID), the brand string is appended: "AMD EPYC [cpuid: AMD EPYC-Rome
// Processor]". Quotes and backslashes are dropped, so it can be printed inside a JSON string.
// Computed once; thread-safe.
const std::string& cpu_model();

// The widest FP32 vector ISA this CPU and OS offer, from CPUID at run time (never from the
// compiler's flags): "avx512f", "avx2+fma" or "sse2". Thread-safe.
const char* cpu_isa();

}  // namespace kiln_bench
