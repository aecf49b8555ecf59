// KILN_VECTOR_CLONES: put on a function whose loop the compiler vectorizes, so a portable build
// (KILN_NATIVE=OFF, baseline x86-64 = SSE2) still runs that loop with AVX-512 or AVX2 where the
// CPU has them: GCC compiles an AVX-512, an AVX2 and a baseline clone and an ifunc picks one
// when the program loads. Measured on kiln_kernels_bench: without it a portable build's tanh,
// sigmoid, gelu and softmax loops are 10-24x slower than native ones (they do not vectorize
// with SSE2 alone). With KILN_NATIVE=ON (-march=native) it expands to nothing: the code is
// already built for the machine, and native builds stay exactly as they were.
//
// Use it only on functions local to one .cc file (anonymous namespace): a multiversioned
// inline or template function shared by several files is where GCC's support is fragile. The
// clones may differ in the last bit: the AVX-512 one (like -march=native) fuses multiply-adds,
// the AVX2 and baseline ones do not; reductions fix their order in source either way.
#pragma once

#if defined(KILN_PORTABLE_CLONES)
#define KILN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KILN_VECTOR_CLONES
#endif
