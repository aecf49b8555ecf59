// IDX reader. The file is read through a ByteSource (raw file or streaming gzip inflate). A raw
// regular file's claim is checked against its size before anything is allocated; a gzip
// stream's buffer grows only with bytes that really arrive: a lying header cannot make us
// allocate.
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "kiln/data.h"

namespace kiln {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw FormatError("read_idx: " + path + ": " + what);
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// Reads up to n bytes; returns fewer only at the end of the (decompressed) stream.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual size_t read(uint8_t* dst, size_t n) = 0;
  // How many bytes read() can still return, when the source knows (a regular file), else -1.
  virtual int64_t remaining() const { return -1; }
};

class RawSource : public ByteSource {
 public:
  // `size`: the file's size when it is a regular file, else -1.
  RawSource(std::FILE* f, std::string path, const uint8_t* pre, size_t npre, int64_t size)
      : f_(f), path_(std::move(path)), pre_(pre, pre + npre), size_(size) {}
  size_t read(uint8_t* dst, size_t n) override {
    size_t got = 0;
    while (got < n && pos_ < pre_.size()) dst[got++] = pre_[pos_++];
    if (got < n) {
      got += std::fread(dst + got, 1, n - got, f_);
      if (std::ferror(f_)) fail(path_, std::string("read error: ") + std::strerror(errno));
    }
    delivered_ += static_cast<int64_t>(got);
    return got;
  }
  int64_t remaining() const override {
    return size_ < 0 ? -1 : std::max<int64_t>(0, size_ - delivered_);
  }

 private:
  std::FILE* f_;
  std::string path_;
  std::vector<uint8_t> pre_;  // bytes already read to sniff the magic
  size_t pos_ = 0;
  int64_t size_;
  int64_t delivered_ = 0;
};

// Streaming gzip inflate; concatenated gzip members are read as one stream (as gunzip does).
class GzipSource : public ByteSource {
 public:
  GzipSource(std::FILE* f, std::string path, const uint8_t* pre, size_t npre)
      : f_(f), path_(std::move(path)), in_(1 << 16) {
    std::memcpy(in_.data(), pre, npre);
    zs_.next_in = in_.data();
    zs_.avail_in = static_cast<uInt>(npre);
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) fail(path_, "gzip: cannot initialize zlib");
  }
  ~GzipSource() override { inflateEnd(&zs_); }

  size_t read(uint8_t* dst, size_t n) override {
    size_t got = 0;
    while (got < n && !done_) {
      if (zs_.avail_in == 0 && !eof_) refill();
      if (member_end_) {
        // Between members: anything but another gzip member is trailing garbage.
        if (zs_.avail_in == 0) {
          done_ = true;
          break;
        }
        if (zs_.next_in[0] != 0x1f) fail(path_, "gzip: trailing garbage after the gzip stream");
        inflateReset(&zs_);
        member_end_ = false;
      }
      zs_.next_out = dst + got;
      zs_.avail_out = static_cast<uInt>(std::min<size_t>(n - got, 1u << 30));
      size_t before = zs_.avail_out;
      int rc = inflate(&zs_, Z_NO_FLUSH);
      got += before - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        member_end_ = true;
      } else if (rc == Z_BUF_ERROR) {
        // No progress: fine only when more input is still to come.
        if (zs_.avail_in != 0 || eof_) {
          fail(path_, "gzip: corrupt or truncated gzip stream (unexpected end of file)");
        }
      } else if (rc != Z_OK) {
        fail(path_,
             std::string("gzip: corrupt gzip stream (") + (zs_.msg ? zs_.msg : "zlib error") + ")");
      } else if (zs_.avail_in == 0 && eof_ && zs_.avail_out != 0) {
        fail(path_, "gzip: corrupt or truncated gzip stream (unexpected end of file)");
      }
    }
    return got;
  }

 private:
  void refill() {
    size_t k = std::fread(in_.data(), 1, in_.size(), f_);
    if (std::ferror(f_)) fail(path_, std::string("read error: ") + std::strerror(errno));
    if (k < in_.size()) eof_ = true;
    zs_.next_in = in_.data();
    zs_.avail_in = static_cast<uInt>(k);
  }

  std::FILE* f_;
  std::string path_;
  std::vector<uint8_t> in_;
  z_stream zs_{};
  bool eof_ = false, member_end_ = false, done_ = false;
};

struct IdxType {
  DType dtype;
  size_t file_size;  // bytes per element in the file
  const char* name;
};

bool idx_type(uint8_t code, IdxType* t) {
  switch (code) {
    case 0x08:
      *t = {uint8, 1, "uint8"};
      return true;
    case 0x09:
      *t = {int8, 1, "int8"};
      return true;
    case 0x0B:
      *t = {int32, 2, "int16"};
      return true;
    case 0x0C:
      *t = {int32, 4, "int32"};
      return true;
    case 0x0D:
      *t = {float32, 4, "float32"};
      return true;
    case 0x0E:
      *t = {float64, 8, "float64"};
      return true;
    default:
      return false;
  }
}

std::string hex(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", v & 0xFF);
  return buf;
}

std::string dims_string(const std::vector<uint64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Converts n big-endian elements of type U at `src` to T.
template <typename T, typename U>
void convert_be(const uint8_t* src, T* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint64_t v = 0;
    for (size_t b = 0; b < sizeof(U); ++b) v = (v << 8) | src[i * sizeof(U) + b];
    U u;
    if constexpr (sizeof(U) == 2) {
      uint16_t w = static_cast<uint16_t>(v);
      std::memcpy(&u, &w, 2);
    } else if constexpr (sizeof(U) == 4) {
      uint32_t w = static_cast<uint32_t>(v);
      std::memcpy(&u, &w, 4);
    } else {
      std::memcpy(&u, &v, 8);
    }
    dst[i] = static_cast<T>(u);
  }
}

// Converts n elements of IDX type `code` at `src` into elements [first, first + n) of `t`.
void convert(uint8_t code, const uint8_t* src, Tensor& t, size_t first, size_t n) {
  switch (code) {
    case 0x08:
    case 0x09:
      if (n) std::memcpy(static_cast<uint8_t*>(t.raw_data()) + first, src, n);
      break;
    case 0x0B:
      convert_be<int32_t, int16_t>(src, t.data<int32_t>() + first, n);
      break;
    case 0x0C:
      convert_be<int32_t, int32_t>(src, t.data<int32_t>() + first, n);
      break;
    case 0x0D:
      convert_be<float, float>(src, t.data<float>() + first, n);
      break;
    case 0x0E:
      convert_be<double, double>(src, t.data<double>() + first, n);
      break;
  }
}

}  // namespace

Tensor read_idx(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) fail(path, std::string("cannot open file: ") + std::strerror(errno));

  uint8_t sniff[2];
  size_t nsniff = std::fread(sniff, 1, 2, f.get());
  std::unique_ptr<ByteSource> src;
  if (nsniff == 2 && sniff[0] == 0x1f && sniff[1] == 0x8b) {
    src = std::make_unique<GzipSource>(f.get(), path, sniff, nsniff);
  } else {
    struct stat st;
    const bool regular = fstat(fileno(f.get()), &st) == 0 && S_ISREG(st.st_mode);
    src = std::make_unique<RawSource>(f.get(), path, sniff, nsniff,
                                      regular ? static_cast<int64_t>(st.st_size) : -1);
  }

  uint8_t magic[4];
  size_t got = src->read(magic, 4);
  if (got < 4) {
    fail(path,
         "magic: expected 4 header bytes (0x00 0x00 type ndims), file has " + std::to_string(got));
  }
  if (magic[0] != 0 || magic[1] != 0) {
    fail(path, "magic: expected first two bytes 0x00 0x00, got " + hex(magic[0]) + " " +
                   hex(magic[1]) + " (not an IDX file)");
  }
  IdxType type;
  if (!idx_type(magic[2], &type)) {
    fail(path, "type: expected one of 0x08 0x09 0x0B 0x0C 0x0D 0x0E, got " + hex(magic[2]));
  }
  const int ndims = magic[3];
  if (ndims > Shape::kMaxRank) {
    fail(path, "ndims: expected at most " + std::to_string(Shape::kMaxRank) + ", got " +
                   std::to_string(ndims));
  }

  std::vector<uint8_t> dim_bytes(4 * ndims);
  got = src->read(dim_bytes.data(), dim_bytes.size());
  if (got < dim_bytes.size()) {
    fail(path, "dims: expected " + std::to_string(ndims) + " big-endian uint32 dims (" +
                   std::to_string(dim_bytes.size()) + " bytes), file ends after " +
                   std::to_string(got));
  }
  std::vector<uint64_t> dims(ndims);
  // Element and byte counts must fit int64 (the Tensor API's counts); checked before any use.
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t count = 1;
  bool overflow = false;
  for (int i = 0; i < ndims; ++i) {
    const uint8_t* p = &dim_bytes[4 * i];
    dims[i] = (uint64_t{p[0]} << 24) | (uint64_t{p[1]} << 16) | (uint64_t{p[2]} << 8) | p[3];
    if (dims[i] != 0 && count > limit / dims[i]) overflow = true;
    if (!overflow) count *= dims[i];
  }
  if (!overflow && count > limit / type.file_size) overflow = true;
  if (overflow) {
    fail(path, "dims: product of dims " + dims_string(dims) + " times " +
                   std::to_string(type.file_size) + " bytes overflows a 64-bit size");
  }
  const uint64_t want = count * type.file_size;
  auto truncated = [&](uint64_t has) {
    fail(path, "data: truncated: dims " + dims_string(dims) + " of " + type.name + " need " +
                   std::to_string(want) + " bytes, file has " + std::to_string(has));
  };
  auto trailing = [&] {
    fail(path, "data: trailing bytes after the " + std::to_string(want) + " bytes that dims " +
                   dims_string(dims) + " of " + type.name + " need");
  };
  Shape shape;
  for (uint64_t d : dims) shape.push_back(static_cast<int64_t>(d));
  const size_t n = static_cast<size_t>(count);
  const size_t chunk = size_t{1} << 20;
  uint8_t extra[1];

  if (const int64_t known = src->remaining(); known >= 0) {
    // A raw regular file: the claim must match the bytes present before anything is allocated;
    // then the data is converted into the tensor one chunk at a time.
    if (static_cast<uint64_t>(known) < want) truncated(static_cast<uint64_t>(known));
    if (static_cast<uint64_t>(known) > want) trailing();
    Tensor t = empty(shape, type.dtype);
    std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(chunk, want)));
    const size_t per_chunk = buf.size() / type.file_size;
    for (size_t done = 0; done < n;) {
      const size_t k = std::min(per_chunk, n - done);
      const size_t got = src->read(buf.data(), k * type.file_size);
      if (got < k * type.file_size) {
        truncated(done * type.file_size + got);  // the file shrank while we read it
      }
      convert(magic[2], buf.data(), t, done, k);
      done += k;
    }
    if (src->read(extra, 1) != 0) trailing();  // the file grew while we read it
    return t;
  }

  // A gzip stream (or a pipe): grow the buffer with the data actually read, never by the
  // header's claim.
  std::vector<uint8_t> buf;
  while (buf.size() < want) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(chunk, want - buf.size()));
    size_t old = buf.size();
    buf.resize(old + k);
    size_t got = src->read(buf.data() + old, k);
    buf.resize(old + got);
    if (got < k) break;
  }
  if (buf.size() < want) truncated(buf.size());
  if (src->read(extra, 1) != 0) trailing();
  Tensor t = empty(shape, type.dtype);
  convert(magic[2], buf.data(), t, 0, n);
  return t;
}

}  // namespace kiln
