// TempDir: a fresh, uniquely named directory for a test's files, removed with everything in it
// when the TempDir goes away.
#pragma once

#include <stdlib.h>  // mkdtemp

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace kiln::testing {

// A directory made by mkdtemp under std::filesystem::temp_directory_path(), named `prefix`
// followed by six random characters. Not copyable or movable: it owns the directory.
class TempDir {
 public:
  // Creates the directory; throws std::system_error if it cannot.
  explicit TempDir(const std::string& prefix = "kiln_test_") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
    }
    path_ = tmpl;
  }

  // Removes the directory and its contents; errors are ignored, it never throws.
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // The directory itself, with no trailing slash.
  const std::string& path() const { return path_; }

  // path() + "/" + name; nothing is created.
  std::string path(const std::string& name) const { return path_ + "/" + name; }

  // Writes `bytes` in binary to path(name), replacing any such file, and returns that path.
  std::string write(const std::string& name, const std::string& bytes) const {
    std::string p = path(name);
    std::ofstream(p, std::ios::binary | std::ios::trunc)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }

  // How many entries the directory holds (not counting "." and "..").
  int entries() const {
    int n = 0;
    for (auto it = std::filesystem::directory_iterator(path_);
         it != std::filesystem::directory_iterator(); ++it) {
      ++n;
    }
    return n;
  }

 private:
  std::string path_;
};

// The whole contents of the file at `path` (binary; empty if it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace kiln::testing
