// One OpenMP runtime for the process: kiln's kernels and oneDNN share its thread team.
#pragma once

namespace kiln {

// Sets the threads kiln's kernels and oneDNN use (default: the number of cores).
void set_num_threads(int n);
int num_threads();

}  // namespace kiln
