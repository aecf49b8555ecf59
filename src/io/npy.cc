// NumPy's .npy format (numpy.lib.format): magic "\x93NUMPY", a version byte pair, a header
// length (2 bytes little-endian in 1.0, 4 in 2.0/3.0), a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces and a final
// '\n' so the data starts at a multiple of 64, then the raw C-order data.
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/error.h"
#include "kiln/io.h"

namespace kiln {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
// Headers numpy writes are a few hundred bytes; a bigger one is not an array header.
constexpr size_t kMaxHeader = 1 << 20;

struct Descr {
  const char* text;  // without the byte-order character
  DType dtype;
};
constexpr Descr kDescrs[] = {
    {"f4", DType::kFloat32}, {"f8", DType::kFloat64}, {"i4", DType::kInt32}, {"i8", DType::kInt64},
    {"i1", DType::kInt8},    {"u1", DType::kUInt8},   {"b1", DType::kBool}};

std::string descr_of(DType t) {
  for (const Descr& d : kDescrs) {
    if (d.dtype == t) return std::string(size_of(t) == 1 ? "|" : "<") + d.text;
  }
  throw DTypeError("save_npy: dtype " + std::string(dtype_name(t)) + " has no .npy descr");
}

std::string clip(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 60)) out += (c >= 32 && c < 127) ? c : '?';
  return s.size() > 60 ? out + "..." : out;
}

// A strict reader of the header dict: string keys, and values that are a string, True/False
// or a tuple of non-negative integers. Nothing else.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& where) : s_(text), where_(where) {}

  struct Fields {
    std::string descr;
    bool fortran = false;
    std::vector<int64_t> shape;
  };

  Fields parse() {
    Fields f;
    bool has_descr = false, has_fortran = false, has_shape = false;
    skip();
    expect('{');
    skip();
    while (peek() != '}') {
      const std::string key = string();
      skip();
      expect(':');
      skip();
      if (key == "descr") {
        if (has_descr) fail("key 'descr' appears twice");
        f.descr = string();
        has_descr = true;
      } else if (key == "fortran_order") {
        if (has_fortran) fail("key 'fortran_order' appears twice");
        f.fortran = boolean();
        has_fortran = true;
      } else if (key == "shape") {
        if (has_shape) fail("key 'shape' appears twice");
        f.shape = tuple();
        has_shape = true;
      } else {
        fail("unexpected key '" + clip(key) + "' (expected descr, fortran_order, shape)");
      }
      skip();
      if (peek() == ',') {
        ++i_;
        skip();
      } else if (peek() != '}') {
        fail("expected ',' or '}' after the value of '" + key + "'");
      }
    }
    ++i_;
    skip();
    if (i_ != s_.size()) fail("text after the header's closing '}'");
    if (!has_descr) fail("key 'descr' is missing");
    if (!has_fortran) fail("key 'fortran_order' is missing");
    if (!has_shape) fail("key 'shape' is missing");
    return f;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw FormatError(where_ + ": bad .npy header: " + what + " in \"" + clip(s_) + "\"");
  }
  char peek() {
    if (i_ >= s_.size()) fail("the header ends early");
    return s_[i_];
  }
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string string() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    ++i_;
    const size_t end = s_.find(q, i_);
    if (end == std::string_view::npos) fail("a string is not closed");
    std::string r(s_.substr(i_, end - i_));
    i_ = end + 1;
    return r;
  }
  bool boolean() {
    if (s_.substr(i_, 4) == "True") return i_ += 4, true;
    if (s_.substr(i_, 5) == "False") return i_ += 5, false;
    fail("fortran_order must be True or False");
  }
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> dims;
    skip();
    while (peek() != ')') {
      if (peek() < '0' || peek() > '9') fail("shape must be a tuple of non-negative integers");
      int64_t v = 0;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) fail("a dim is too large");
        v = v * 10 + (s_[i_++] - '0');
      }
      if (s_.substr(i_, 1) == "L") ++i_;  // Python 2 longs
      dims.push_back(v);
      if (dims.size() > static_cast<size_t>(Shape::kMaxRank)) {
        fail("shape has more than " + std::to_string(Shape::kMaxRank) + " dims");
      }
      skip();
      if (peek() == ',') {
        ++i_;
        skip();
      } else if (peek() != ')') {
        fail("expected ',' or ')' in shape");
      }
    }
    ++i_;
    return dims;
  }

  std::string_view s_;
  std::string where_;
  size_t i_ = 0;
};

DType parse_descr(const std::string& d, const std::string& where) {
  if (d.size() == 3) {
    const char order = d[0];
    const std::string body = d.substr(1);
    for (const Descr& k : kDescrs) {
      if (body != k.text) continue;
      const bool one_byte = size_of(k.dtype) == 1;
      if (order == '|' || order == '=' || order == '<' || (one_byte && order == '>'))
        return k.dtype;
      if (order == '>') {
        throw FormatError(where + ": descr '" + d +
                          "' is big-endian; kiln reads little-endian "
                          ".npy files (save with arr.astype(arr.dtype.newbyteorder('<')))");
      }
    }
  }
  if (d.find('O') != std::string::npos) {
    throw FormatError(where + ": object arrays ('" + clip(d) +
                      "') cannot be read; save a numeric array");
  }
  throw FormatError(where + ": descr '" + clip(d) +
                    "' is not a kiln dtype (float32 <f4, float64 <f8, int32 <i4, int64 <i8, int8 "
                    "|i1, uint8 |u1, bool |b1)");
}

}  // namespace

std::string npy_bytes(const Tensor& t) {
  if (!t.defined()) throw ValueError("save_npy: the tensor is undefined");
  std::string shape = "(";
  for (int64_t d : t.shape().dims()) shape += std::to_string(d) + ", ";
  if (t.rank() > 1) shape.resize(shape.size() - 2);
  if (t.rank() == 1) shape.resize(shape.size() - 1);  // "(3,)"
  shape += ")";
  std::string header =
      "{'descr': '" + descr_of(t.dtype()) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // magic + version + 2-byte length + header + '\n', padded to a multiple of 64.
  size_t total = kMagicLen + 2 + 2 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out(kMagic, kMagicLen);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(static_cast<const char*>(t.raw_data()), t.nbytes());
  return out;
}

void save_npy(const std::string& path, const Tensor& t) {
  const std::string bytes = npy_bytes(t);
  atomic_write_file(path, bytes);
}

Tensor parse_npy(std::string_view bytes, const std::string& name) {
  if (bytes.size() < kMagicLen + 2 || std::memcmp(bytes.data(), kMagic, kMagicLen) != 0) {
    throw FormatError(name + ": not a .npy file (no \\x93NUMPY magic at its start)");
  }
  const unsigned major = static_cast<unsigned char>(bytes[6]);
  const unsigned minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0) {
    throw FormatError(name + ": .npy format version " + std::to_string(major) + "." +
                      std::to_string(minor) + " is not one kiln reads (1.0, 2.0, 3.0)");
  }
  const size_t len_bytes = major == 1 ? 2 : 4;
  if (bytes.size() < 8 + len_bytes) throw FormatError(name + ": the .npy header length is cut off");
  size_t header_len = 0;
  for (size_t k = 0; k < len_bytes; ++k) {
    header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + k])) << (8 * k);
  }
  const size_t data_at = 8 + len_bytes + header_len;
  if (header_len > kMaxHeader || data_at > bytes.size()) {
    throw FormatError(name + ": the .npy header claims " + std::to_string(header_len) +
                      " bytes but the file has " + std::to_string(bytes.size() - 8 - len_bytes) +
                      " after the magic");
  }
  HeaderParser::Fields f = HeaderParser(bytes.substr(8 + len_bytes, header_len), name).parse();
  if (f.fortran) {
    throw FormatError(name +
                      ": Fortran-order arrays are not supported: save with "
                      "np.ascontiguousarray");
  }
  const DType dtype = parse_descr(f.descr, name);
  // The element count, refusing overflow before comparing with what the file holds.
  const size_t item = size_of(dtype), have = bytes.size() - data_at;
  size_t numel = 1;
  for (int64_t d : f.shape) {
    const size_t ud = static_cast<size_t>(d);
    if (ud != 0 && numel > std::numeric_limits<size_t>::max() / item / ud) {
      throw FormatError(name + ": shape " + to_string(Shape(f.shape)) + " is too large");
    }
    numel *= ud;
  }
  if (numel * item != have) {
    throw FormatError(name + ": shape " + to_string(Shape(f.shape)) + " of " +
                      std::string(dtype_name(dtype)) + " needs " + std::to_string(numel * item) +
                      " data bytes, the file holds " + std::to_string(have));
  }
  Tensor t = empty(Shape(f.shape), dtype);
  if (have) std::memcpy(t.raw_data(), bytes.data() + data_at, have);
  if (dtype == DType::kBool) {
    const unsigned char* b = static_cast<const unsigned char*>(t.raw_data());
    for (size_t i = 0; i < numel; ++i) {
      if (b[i] > 1) {
        throw FormatError(name + ": bool element " + std::to_string(i) + " is " +
                          std::to_string(b[i]) + ", not 0 or 1");
      }
    }
  }
  return t;
}

Tensor load_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(path + ": cannot open the .npy file");
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size < 0) throw FormatError(path + ": cannot read the .npy file (not a regular file?)");
  f.seekg(0);
  std::string bytes(static_cast<size_t>(size), '\0');
  if (size > 0 && !f.read(bytes.data(), size)) throw FormatError(path + ": reading failed");
  return parse_npy(bytes, path);
}

}  // namespace kiln
