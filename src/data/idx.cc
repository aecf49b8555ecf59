// IDX reader. The file is read through a ByteSource (raw file or streaming gzip inflate) so the
// data buffer grows only with bytes that really exist: a lying header cannot make us allocate.
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
};

class RawSource : public ByteSource {
 public:
  RawSource(std::FILE* f, std::string path, const uint8_t* pre, size_t npre)
      : f_(f), path_(std::move(path)), pre_(pre, pre + npre) {}
  size_t read(uint8_t* dst, size_t n) override {
    size_t got = 0;
    while (got < n && pos_ < pre_.size()) dst[got++] = pre_[pos_++];
    if (got < n) {
      got += std::fread(dst + got, 1, n - got, f_);
      if (std::ferror(f_)) fail(path_, std::string("read error: ") + std::strerror(errno));
    }
    return got;
  }

 private:
  std::FILE* f_;
  std::string path_;
  std::vector<uint8_t> pre_;  // bytes already read to sniff the magic
  size_t pos_ = 0;
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
    src = std::make_unique<RawSource>(f.get(), path, sniff, nsniff);
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

  // Grow the buffer with the data actually read, never by the header's claim.
  std::vector<uint8_t> buf;
  const size_t chunk = size_t{1} << 20;
  while (buf.size() < want) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, want - buf.size()));
    size_t old = buf.size();
    buf.resize(old + n);
    size_t k = src->read(buf.data() + old, n);
    buf.resize(old + k);
    if (k < n) break;
  }
  if (buf.size() < want) {
    fail(path, "data: truncated: dims " + dims_string(dims) + " of " + type.name + " need " +
                   std::to_string(want) + " bytes, file has " + std::to_string(buf.size()));
  }
  uint8_t extra[1];
  if (src->read(extra, 1) != 0) {
    fail(path, "data: trailing bytes after the " + std::to_string(want) + " bytes that dims " +
                   dims_string(dims) + " of " + type.name + " need");
  }

  Shape shape;
  for (uint64_t d : dims) shape.push_back(static_cast<int64_t>(d));
  Tensor t = empty(shape, type.dtype);
  const size_t n = static_cast<size_t>(count);
  switch (magic[2]) {
    case 0x08:
    case 0x09:
      if (n) std::memcpy(t.raw_data(), buf.data(), n);
      break;
    case 0x0B:
      convert_be<int32_t, int16_t>(buf.data(), t.data<int32_t>(), n);
      break;
    case 0x0C:
      convert_be<int32_t, int32_t>(buf.data(), t.data<int32_t>(), n);
      break;
    case 0x0D:
      convert_be<float, float>(buf.data(), t.data<float>(), n);
      break;
    case 0x0E:
      convert_be<double, double>(buf.data(), t.data<double>(), n);
      break;
  }
  return t;
}

}  // namespace kiln
