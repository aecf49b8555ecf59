// atomic_write_file: temp file in the target's directory -> write -> fsync -> rename -> fsync
// of the directory. Any failure before the rename removes the temp file; the target is only
// ever replaced by the complete, synced new file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "io/atomic_file_testing.h"
#include "kiln/io.h"

namespace kiln {
namespace detail {
namespace {
std::atomic<AtomicWriteFault> g_fault{AtomicWriteFault::kNone};
}
void set_atomic_write_fault(AtomicWriteFault step) { g_fault.store(step); }
}  // namespace detail

namespace {

using detail::AtomicWriteFault;

bool injected(AtomicWriteFault step) {
  if (detail::g_fault.load() != step) return false;
  errno = EIO;
  return true;
}

[[noreturn]] void io_fail(const std::string& path, const std::string& step, int err) {
  throw Error("atomic_write_file: " + path + ": " + step + " failed: " + std::strerror(err));
}

class FdSink : public FileSink {
 public:
  FdSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  void write(const void* data, size_t n) override {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t k = injected(AtomicWriteFault::kWrite) ? -1 : ::write(fd_, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        io_fail(path_, "write", errno);
      }
      p += k;
      n -= static_cast<size_t>(k);
    }
  }

 private:
  int fd_;
  std::string path_;
};

// Removes the temp file and closes its descriptor unless released after the rename.
struct TempFile {
  std::string path;
  int fd = -1;
  bool keep = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!keep && !path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

void atomic_write_file(const std::string& path, const std::function<void(FileSink&)>& fill) {
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  if (target.filename().empty()) io_fail(path, "naming the file", EISDIR);

  std::string tmp_name = ".";  // hidden, next to the target (rename needs the same file system)
  tmp_name += target.filename().string();
  tmp_name += ".tmp.XXXXXX";
  std::string tmpl = (dir / tmp_name).string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  TempFile tmp;
  tmp.fd = injected(AtomicWriteFault::kCreate) ? -1 : ::mkstemp(buf.data());
  if (tmp.fd < 0) io_fail(path, "creating a temp file in " + dir.string(), errno);
  tmp.path = buf.data();
  // mkstemp makes 0600 files; saved models are ordinary readable files.
  ::fchmod(tmp.fd, 0644);

  FdSink sink(tmp.fd, path);
  fill(sink);

  if (injected(AtomicWriteFault::kFsync) || ::fsync(tmp.fd) != 0) io_fail(path, "fsync", errno);
  int fd = tmp.fd;
  tmp.fd = -1;
  if (::close(fd) != 0) io_fail(path, "close", errno);
  if (injected(AtomicWriteFault::kRename) || ::rename(tmp.path.c_str(), path.c_str()) != 0) {
    io_fail(path, "rename from " + tmp.path, errno);
  }
  tmp.keep = true;

  // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL).
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    int rc = injected(AtomicWriteFault::kDirFsync) ? -1 : ::fsync(dfd);
    int err = errno;
    ::close(dfd);
    if (rc != 0 && err != EINVAL) {
      io_fail(path, "fsync of directory " + dir.string() + " (the new file is in place)", err);
    }
  }
}

void atomic_write_file(const std::string& path, std::string_view contents) {
  atomic_write_file(path, [&](FileSink& s) { s.write(contents.data(), contents.size()); });
}

}  // namespace kiln
