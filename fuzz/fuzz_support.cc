#include "fuzz_support.h"

#include <fcntl.h>
#include <sanitizer/allocator_interface.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <typeinfo>

#include "kiln/error.h"

namespace kiln::fuzz {
namespace {

// ---- live-heap accounting through the sanitizer allocator's hooks ------------------------
std::atomic<int64_t> g_live{0};
std::atomic<bool> g_armed{false};
int64_t g_base = 0, g_limit = 0;

void on_malloc(const volatile void* ptr, size_t size) {
  int64_t live = g_live.fetch_add(static_cast<int64_t>(size)) + static_cast<int64_t>(size);
  if (g_armed.load(std::memory_order_relaxed) && live - g_base > g_limit) {
    g_armed = false;  // before printing, which may allocate
    std::fprintf(stderr,
                 "kiln fuzz: allocation of %zu bytes takes the live heap %lld bytes past its "
                 "value at the start of this input; the bound for this input is %lld\n",
                 size, static_cast<long long>(live - g_base), static_cast<long long>(g_limit));
    std::abort();
  }
}
void on_free(const volatile void* ptr) {
  if (ptr)
    g_live.fetch_sub(
        static_cast<int64_t>(__sanitizer_get_allocated_size(const_cast<const void*>(ptr))));
}
const bool g_hooks = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0;

std::string g_path;
void remove_input() { std::remove(g_path.c_str()); }

}  // namespace

void fail(const std::string& what) {
  std::fprintf(stderr, "kiln fuzz: %s\n", what.c_str());
  std::abort();
}

const std::string& input_file(const uint8_t* data, size_t size) {
  if (g_path.empty()) {
    std::string dir = "/dev/shm";
    if (access(dir.c_str(), W_OK) != 0) {
      const char* t = std::getenv("TMPDIR");
      dir = t && *t ? t : "/tmp";
    }
    g_path = dir + "/kiln_fuzz_input_" + std::to_string(getpid());
    std::atexit(remove_input);
  }
  int fd = open(g_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) fail("cannot create " + g_path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < size) {
    ssize_t k = write(fd, data + done, size - done);
    if (k <= 0) fail("cannot write " + g_path + ": " + std::strerror(errno));
    done += static_cast<size_t>(k);
  }
  close(fd);
  return g_path;
}

void expect_only_kiln_errors(const std::string& path, size_t max_extra_bytes,
                             const std::function<void()>& fn) {
  if (!g_hooks) fail("cannot install the allocator hooks (build with -fsanitize=address)");
  g_base = g_live.load();
  g_limit = static_cast<int64_t>(max_extra_bytes);
  g_armed = true;
  try {
    fn();
  } catch (const kiln::Error& e) {
    g_armed = false;
    if (std::string(e.what()).find(path) == std::string::npos) {
      fail(std::string("kiln::Error without the file's path (") + typeid(e).name() +
           "): " + e.what());
    }
    return;
  } catch (const std::exception& e) {
    g_armed = false;
    fail(std::string("not a kiln::Error: ") + typeid(e).name() + ": " + e.what());
  } catch (...) {
    g_armed = false;
    fail("not a kiln::Error: an exception of a non-std type");
  }
  g_armed = false;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::string p = dir + "/" + name;
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) fail("cannot write " + p);
}

std::string gzip(const std::string& raw) {
  z_stream zs{};
  if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    fail("deflateInit2 failed");
  }
  std::string out(deflateBound(&zs, raw.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) fail("deflate failed");
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string gunzip(const std::string& gz) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail("inflateInit2 failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  zs.avail_in = static_cast<uInt>(gz.size());
  std::string out;
  char buf[1 << 16];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) fail("gunzip: corrupt stream");
    out.append(buf, sizeof buf - zs.avail_out);
  }
  inflateEnd(&zs);
  return out;
}

void maybe_write_seeds(int* argc, char*** argv,
                       const std::function<void(const std::string&)>& write) {
  const std::string flag = "--write-seeds=";
  for (int i = 1; i < *argc; ++i) {
    std::string a = (*argv)[i];
    if (a.rfind(flag, 0) != 0) continue;
    std::string dir = a.substr(flag.size());
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail("cannot create " + dir + ": " + ec.message());
    write(dir);
    std::exit(0);
  }
}

}  // namespace kiln::fuzz
