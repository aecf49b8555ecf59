#include "kiln/threading.h"

#include <omp.h>

#include <string>

#include "kiln/error.h"

namespace kiln {

void set_num_threads(int n) {
  if (n < 1) throw ValueError("set_num_threads: need at least 1 thread, got " + std::to_string(n));
  omp_set_num_threads(n);  // oneDNN (OpenMP build) reads the same setting
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace kiln
