// What every kiln fuzz target shares: the input as a file (kiln's readers take paths), the
// error contract, an allocation bound tied to the input's size, and the --write-seeds mode.
//
// Contract checked for every input: the reader returns or throws kiln::Error (or a subclass)
// whose message names the file. Any other exception, a message without the file's path, a
// sanitizer report, or a run whose live heap grows past the target's bound for this input
// aborts, so libFuzzer records it as a crash and saves the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace kiln::fuzz {

// Reports a broken contract on stderr and aborts (libFuzzer saves the input as a crash).
[[noreturn]] void fail(const std::string& what);

// Writes the fuzz input to one file per process (under /dev/shm when it exists, else $TMPDIR
// or /tmp) and returns its path; the file is replaced on every call and removed at exit.
const std::string& input_file(const uint8_t* data, size_t size);

// Runs `fn`; returns when it does, or when it throws a kiln::Error whose message contains
// `path`. Anything else aborts with the exception's type and message. While `fn` runs, growth
// of the live heap beyond `max_extra_bytes` aborts at the allocation that crossed it.
void expect_only_kiln_errors(const std::string& path, size_t max_extra_bytes,
                             const std::function<void()>& fn);

// For seed writers: a file's whole contents (aborts when it cannot be read), a file write
// (aborts on failure), and gzip / gunzip of a byte string (aborts on a corrupt stream).
std::string read_file(const std::string& path);
void write_file(const std::string& dir, const std::string& name, const std::string& bytes);
std::string gzip(const std::string& raw);
std::string gunzip(const std::string& gz);

// Handles the target's own flag --write-seeds=DIR (libFuzzer ignores flags starting with
// "--"): creates DIR, calls `write(DIR)`, then exits 0. Without the flag it returns.
// Call from LLVMFuzzerInitialize.
void maybe_write_seeds(int* argc, char*** argv,
                       const std::function<void(const std::string&)>& write);

}  // namespace kiln::fuzz
