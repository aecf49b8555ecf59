// atomic_write_file: new and replaced files, and a failure at every step keeps the old file and
// leaves no temp file behind.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "io/atomic_file_testing.h"
#include "kiln/io.h"
#include "testing/op_check.h"
#include "testing/temp_dir.h"

namespace kiln {
namespace {

using detail::AtomicWriteFault;
using testing::expect_error;
using testing::TempDir;
namespace fs = std::filesystem;

// Clears the injected fault even when a test fails half-way.
struct FaultGuard {
  explicit FaultGuard(AtomicWriteFault f) { detail::set_atomic_write_fault(f); }
  ~FaultGuard() { detail::set_atomic_write_fault(AtomicWriteFault::kNone); }
};

TEST(AtomicWrite, CreatesAndReplaces) {
  TempDir dir("kiln_atomic_");
  std::string p = dir.path() + "/out.bin";
  atomic_write_file(p, "first");
  EXPECT_EQ(testing::read_file(p), "first");
  atomic_write_file(p, [](FileSink& s) {
    s.write("sec", 3);
    s.write("ond", 3);
  });
  EXPECT_EQ(testing::read_file(p), "second");
  atomic_write_file(p, std::string_view());
  EXPECT_EQ(testing::read_file(p), "");
  EXPECT_EQ(dir.entries(), 1);  // no temp file left
  EXPECT_EQ(fs::status(p).permissions() & fs::perms::others_read, fs::perms::others_read);
}

TEST(AtomicWrite, RelativePathWritesInTheCurrentDirectory) {
  TempDir dir("kiln_atomic_");
  fs::path old = fs::current_path();
  fs::current_path(dir.path());
  atomic_write_file("rel.txt", "x");
  fs::current_path(old);
  EXPECT_EQ(testing::read_file(dir.path() + "/rel.txt"), "x");
  EXPECT_EQ(dir.entries(), 1);
}

TEST(AtomicWrite, ThrowingFillKeepsTheOldFile) {
  TempDir dir("kiln_atomic_");
  std::string p = dir.path() + "/out.bin";
  atomic_write_file(p, "old contents");
  try {
    atomic_write_file(p, [](FileSink& s) {
      s.write("half of the new", 15);
      throw std::runtime_error("serializer failed");
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "serializer failed");  // rethrown as is
  }
  EXPECT_EQ(testing::read_file(p), "old contents");
  EXPECT_EQ(dir.entries(), 1);
}

TEST(AtomicWrite, FailureAtEveryStepKeepsTheOldFile) {
  const std::pair<AtomicWriteFault, const char*> steps[] = {
      {AtomicWriteFault::kCreate, "creating a temp file"},
      {AtomicWriteFault::kWrite, "write failed"},
      {AtomicWriteFault::kFsync, "fsync failed"},
      {AtomicWriteFault::kRename, "rename from"},
  };
  for (const auto& [fault, step] : steps) {
    TempDir dir("kiln_atomic_");
    std::string p = dir.path() + "/model.safetensors";
    atomic_write_file(p, "old");
    {
      FaultGuard guard(fault);
      expect_error<Error>([&] { atomic_write_file(p, "new contents"); },
                          {"atomic_write_file", p, step, "Input/output error"});
    }
    EXPECT_EQ(testing::read_file(p), "old") << step;
    EXPECT_EQ(dir.entries(), 1) << step;
  }
}

TEST(AtomicWrite, DirectoryFsyncFailureIsReportedAfterTheRename) {
  TempDir dir("kiln_atomic_");
  std::string p = dir.path() + "/f";
  atomic_write_file(p, "old");
  {
    FaultGuard guard(AtomicWriteFault::kDirFsync);
    expect_error<Error>([&] { atomic_write_file(p, "new"); },
                        {p, "fsync of directory", "the new file is in place"});
  }
  EXPECT_EQ(testing::read_file(p), "new");
  EXPECT_EQ(dir.entries(), 1);
}

TEST(AtomicWrite, MissingParentDirectory) {
  TempDir dir("kiln_atomic_");
  std::string p = dir.path() + "/no/such/dir/file.bin";
  expect_error<Error>([&] { atomic_write_file(p, "x"); },
                      {p, "creating a temp file", "No such file or directory"});
  EXPECT_EQ(dir.entries(), 0);
}

TEST(AtomicWrite, TargetIsADirectory) {
  TempDir dir("kiln_atomic_");
  std::string p = dir.path() + "/sub";
  fs::create_directory(p);
  fs::create_directory(p + "/keep");
  expect_error<Error>([&] { atomic_write_file(p, "x"); }, {p, "rename"});
  EXPECT_TRUE(fs::is_directory(p + "/keep"));
  EXPECT_EQ(dir.entries(), 1);
}

}  // namespace
}  // namespace kiln
