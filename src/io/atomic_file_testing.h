// Test hook for atomic_write_file: makes the next writes fail at a chosen step, so tests can
// check that a failure at any step keeps the old file and removes the temp file (as root,
// permission tricks cannot make these steps fail).
#pragma once

namespace kiln::detail {

enum class AtomicWriteFault { kNone, kCreate, kWrite, kFsync, kRename, kDirFsync };

// Every atomic_write_file call fails at `step` until this is called again with kNone.
void set_atomic_write_fault(AtomicWriteFault step);

}  // namespace kiln::detail
