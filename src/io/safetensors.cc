// safetensors reader and writer. The reader trusts nothing: every length and offset is checked
// against the real file size before it is used, and data is read straight into tensors.
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "kiln/io.h"

namespace kiln {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; kiln reads it in place");

// The reader parses into std::map objects (ordered_json inserts by linear search); header order
// comes from JsonScan.
using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;  // the writer: keys in the order given

constexpr uint64_t kMaxHeader = 100ull << 20;
constexpr const char* kMetadata = "__metadata__";

struct DTypeCode {
  const char* code;
  DType dtype;
};
constexpr DTypeCode kCodes[] = {{"F32", float32}, {"F64", float64}, {"I32", int32},
                                {"I64", int64},   {"I8", int8},     {"U8", uint8},
                                {"BOOL", boolean}};

const char* code_of(DType t) {
  for (const auto& c : kCodes) {
    if (c.dtype == t) return c.code;
  }
  return "?";
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// Containers in a valid header start at depth 0 (the header), 1 (a tensor or __metadata__) and
// 2 (shape, data_offsets). Deeper nesting is refused by JsonScan before a tree is built:
// nlohmann's copy and dump recurse per level, so a header of 200k '[' overflowed the stack.
constexpr int kMaxJsonDepth = 2;

// Error messages quote names and JSON from the file cut to this length, so that one bad field
// gives one readable line, not megabytes.
constexpr size_t kMaxQuoted = 80;

std::string clip(const std::string& s, size_t max = kMaxQuoted) {
  if (s.size() <= max) return s;
  while (max > 0 && (static_cast<unsigned char>(s[max]) & 0xC0) == 0x80) --max;  // whole UTF-8
  return s.substr(0, max) + "...";
}
// 'name', cut to kMaxQuoted.
std::string q(const std::string& name) {
  std::string r(1, '\'');  // appended, not "'" + ...: gcc 12 -O3 warns falsely (-Wrestrict)
  r += clip(name);
  r += '\'';
  return r;
}
std::string brief(const Json& v) { return clip(v.dump()); }

// A SAX pass over the JSON before it is parsed into a tree: refuses nesting deeper than
// max_depth without recursion, records the top-level keys in order and the first duplicate, and
// keeps the parser's message on a syntax error. (Not a parse callback: nlohmann's callback
// parser rescans the parent at every closing brace, O(n^2) for n tensors: 50k took 45 s.)
class JsonScan : public nlohmann::json_sax<Json> {
 public:
  explicit JsonScan(int max_depth) : max_depth_(max_depth) {}

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return open(); }
  bool start_array(std::size_t) override { return open(); }
  bool end_object() override { return --depth_, true; }
  bool end_array() override { return --depth_, true; }
  bool key(string_t& k) override {
    if (depth_ == 1) {
      if (seen_.insert(k).second) {
        keys.push_back(k);
      } else if (duplicate.empty()) {
        duplicate = k;
      }
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const Json::exception& e) override {
    error = e.what();
    return false;
  }

  std::vector<std::string> keys;  // of the top-level object, in order, each once
  std::string duplicate;          // the first top-level key seen twice
  std::string error;              // the parser's message, when the JSON is invalid
  bool too_deep = false;

 private:
  bool open() {
    if (depth_ > max_depth_) {
      too_deep = true;
      return false;
    }
    ++depth_;
    return true;
  }
  int max_depth_;
  int depth_ = 0;
  std::set<std::string> seen_;
};

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError("load_safetensors: " + path_ + ": " + what);
  }

  SafetensorsFile read();

 private:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };

  void read_at(uint64_t offset, void* dst, size_t n, const std::string& what) {
    if (n == 0) return;
    if (fseeko(f_.get(), static_cast<off_t>(offset), SEEK_SET) != 0 ||
        std::fread(dst, 1, n, f_.get()) != n) {
      fail(what + ": cannot read " + std::to_string(n) + " bytes at offset " +
           std::to_string(offset) + " (file changed while reading?)");
    }
  }
  Entry parse_entry(const std::string& name, const Json& v, uint64_t buffer_size) const;
  void parse_metadata(const Json& v, SafetensorsFile* out) const;

  std::string path_;
  std::unique_ptr<std::FILE, FileCloser> f_;
};

Reader::Entry Reader::parse_entry(const std::string& name, const Json& v,
                                  uint64_t buffer_size) const {
  const std::string where = "tensor " + q(name) + ": ";
  if (!v.is_object()) fail(where + "expected a JSON object {dtype, shape, data_offsets}");
  for (const auto& [key, _] : v.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      fail(where + "unexpected field " + q(key) + " (expected only dtype, shape, data_offsets)");
    }
  }
  Entry e;
  e.name = name;
  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) fail(where + "dtype: expected a string field");
  const std::string code = dt->get<std::string>();
  auto known = std::find_if(std::begin(kCodes), std::end(kCodes),
                            [&](const DTypeCode& c) { return code == c.code; });
  if (known == std::end(kCodes)) {
    fail(where + "dtype: expected one of F32 F64 I32 I64 I8 U8 BOOL, got \"" + clip(code) + "\"");
  }
  e.dtype = known->dtype;

  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) fail(where + "shape: expected an array of integers");
  if (sh->size() > static_cast<size_t>(Shape::kMaxRank)) {
    fail(where + "shape: expected at most " + std::to_string(Shape::kMaxRank) + " dims, got " +
         std::to_string(sh->size()));
  }
  // numel * itemsize must fit int64 (the Tensor API's counts) and the buffer.
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t numel = 1;
  bool overflow = false;
  for (const Json& d : *sh) {
    if (!d.is_number_integer() ||
        (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)) {
      fail(where + "shape: expected non-negative integers, got " + brief(*sh));
    }
    uint64_t dim = d.get<uint64_t>();
    if (dim > limit) fail(where + "shape: dim " + std::to_string(dim) + " is too large");
    if (dim != 0 && numel > limit / dim) overflow = true;
    if (!overflow) numel *= dim;
    e.shape.push_back(static_cast<int64_t>(dim));
  }
  const uint64_t item = size_of(e.dtype);
  if (!overflow && numel > limit / item) overflow = true;
  if (overflow) fail(where + "shape: " + brief(*sh) + " times itemsize overflows a 64-bit size");
  const uint64_t nbytes = numel * item;

  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned()) {
    fail(where + "data_offsets: expected [begin, end] of two non-negative integers");
  }
  e.begin = (*off)[0].get<uint64_t>();
  e.end = (*off)[1].get<uint64_t>();
  if (e.begin > e.end) {
    fail(where + "data_offsets: expected begin <= end, got " + brief(*off));
  }
  if (e.end > buffer_size) {
    fail(where + "data_offsets: expected end <= " + std::to_string(buffer_size) +
         " (the data buffer size), got " + brief(*off));
  }
  if (e.end - e.begin != nbytes) {
    fail(where + "data_offsets: " + brief(*off) + " span " + std::to_string(e.end - e.begin) +
         " bytes, expected " + std::to_string(nbytes) + " (" + std::to_string(numel) + " x " +
         code + ")");
  }
  return e;
}

void Reader::parse_metadata(const Json& v, SafetensorsFile* out) const {
  if (!v.is_object()) fail("__metadata__: expected an object of string values");
  for (const auto& [key, val] : v.items()) {
    if (!val.is_string()) {
      fail("__metadata__: value of " + q(key) + ": expected a string, got " + brief(val));
    }
    if (key != kAliasesMetadataKey) {
      out->metadata[key] = val.get<std::string>();
      continue;
    }
    const std::string expected = std::string("__metadata__: ") + kAliasesMetadataKey +
                                 ": expected a JSON object {alias: canonical name} as a string";
    // {alias: name} is flat: refuse nesting before building a tree (see kMaxJsonDepth).
    JsonScan scan(/*max_depth=*/0);
    const bool valid = Json::sax_parse(val.get<std::string>(), &scan);
    if (scan.too_deep) fail(expected + ", got nested JSON");
    if (!valid) fail(expected);
    Json aliases = Json::parse(val.get<std::string>(), nullptr, /*allow_exceptions=*/false);
    if (!aliases.is_object()) fail(expected);
    for (const auto& [alias, canon] : aliases.items()) {
      if (!canon.is_string()) {
        fail(std::string("__metadata__: ") + kAliasesMetadataKey + ": alias " + q(alias) +
             ": expected a tensor name string");
      }
      out->aliases[alias] = canon.get<std::string>();
    }
  }
}

SafetensorsFile Reader::read() {
  f_.reset(std::fopen(path_.c_str(), "rb"));
  if (!f_) fail(std::string("cannot open file: ") + std::strerror(errno));
  struct stat st;
  if (fstat(fileno(f_.get()), &st) != 0 || !S_ISREG(st.st_mode)) fail("not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    fail("file length: expected at least 8 bytes (the header length), got " + std::to_string(size));
  }
  uint8_t len_bytes[8];
  read_at(0, len_bytes, 8, "header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  if (n > size - 8) {
    fail("header length: " + std::to_string(n) + " exceeds the " + std::to_string(size - 8) +
         " bytes after the 8-byte length (truncated file?)");
  }
  if (n > kMaxHeader) {
    fail("header length: " + std::to_string(n) + " exceeds the 100 MB limit");
  }
  std::string text(n, '\0');
  read_at(8, text.data(), n, "header");

  // Duplicate top-level names would silently shadow each other: the scan sees every key.
  JsonScan scan(kMaxJsonDepth);
  const bool valid = Json::sax_parse(text, &scan);
  if (scan.too_deep) {
    fail("header: JSON nested deeper than a safetensors header ({name: {field: [values]}})");
  }
  if (!valid) fail("header: expected valid JSON: " + clip(scan.error, 3 * kMaxQuoted));
  Json header;
  try {
    header = Json::parse(text);
  } catch (const Json::exception& e) {  // not expected after the scan
    fail("header: expected valid JSON: " + clip(e.what(), 3 * kMaxQuoted));
  }
  if (!header.is_object())
    fail("header: expected a JSON object, got " + std::string(header.type_name()));
  if (!scan.duplicate.empty()) {
    fail("header: tensor " + q(scan.duplicate) + " appears more than once");
  }

  const uint64_t data_start = 8 + n;
  const uint64_t buffer_size = size - data_start;
  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const std::string& name : scan.keys) {
    const Json& v = header.find(name).value();
    if (name == kMetadata) {
      parse_metadata(v, &out);
    } else {
      entries.push_back(parse_entry(name, v, buffer_size));
    }
  }

  // The entries must tile [0, buffer_size) exactly: no overlap, no gap, nothing left over.
  std::vector<const Entry*> sorted;
  for (const Entry& e : entries) sorted.push_back(&e);
  std::stable_sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
    return std::tie(a->begin, a->end) < std::tie(b->begin, b->end);
  });
  uint64_t expected = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : sorted) {
    if (e->begin < expected) {
      fail("tensor " + q(e->name) + ": data_offsets: [" + std::to_string(e->begin) + ", " +
           std::to_string(e->end) + "] overlap tensor " + q(prev->name) + " (expected begin " +
           std::to_string(expected) + ")");
    }
    if (e->begin > expected) {
      fail("tensor " + q(e->name) + ": data_offsets: begin " + std::to_string(e->begin) +
           " leaves a gap: bytes [" + std::to_string(expected) + ", " + std::to_string(e->begin) +
           ") belong to no tensor (expected begin " + std::to_string(expected) + ")");
    }
    expected = e->end;
    prev = e;
  }
  if (expected != buffer_size) {
    fail("data buffer: " + std::to_string(buffer_size) + " bytes, but the tensors cover only " +
         std::to_string(expected) + " (expected no trailing bytes)");
  }

  // A hash set, not a scan per alias: n aliases of n tensors were O(n^2).
  std::unordered_set<std::string_view> names;
  for (const Entry& e : entries) names.insert(e.name);
  for (const auto& [alias, canon] : out.aliases) {
    if (names.count(alias) || !names.count(canon)) {
      fail(std::string("__metadata__: ") + kAliasesMetadataKey + ": alias " + q(alias) + " -> " +
           q(canon) + ": expected an alias that is not a stored tensor, of a stored tensor");
    }
  }

  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, e.dtype);
    read_at(data_start + e.begin, t.raw_data(), static_cast<size_t>(e.end - e.begin),
            "tensor " + q(e.name));
    if (e.dtype == boolean) {
      const uint8_t* b = static_cast<const uint8_t*>(t.raw_data());
      for (int64_t i = 0; i < t.numel(); ++i) {
        if (b[i] > 1) {
          fail("tensor " + q(e.name) + ": BOOL data: expected bytes 0 or 1, got " +
               std::to_string(b[i]) + " at element " + std::to_string(i));
        }
      }
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

}  // namespace

// ---- SafetensorsFile ---------------------------------------------------------------------

bool SafetensorsFile::contains(const std::string& name) const {
  if (aliases.count(name)) return true;
  return std::any_of(tensors.begin(), tensors.end(),
                     [&](const auto& p) { return p.first == name; });
}

const Tensor& SafetensorsFile::at(const std::string& name) const {
  auto a = aliases.find(name);
  const std::string& key = a == aliases.end() ? name : a->second;
  for (const auto& [n, t] : tensors) {
    if (n == key) return t;
  }
  throw ValueError("SafetensorsFile::at: no tensor or alias named '" + name + "'");
}

std::vector<std::pair<std::string, Tensor>> SafetensorsFile::all() const {
  std::vector<std::pair<std::string, Tensor>> out = tensors;
  // One index for all aliases (at() scans the tensors: O(n^2) for n aliases).
  std::unordered_map<std::string_view, const Tensor*> by_name;
  for (const auto& [name, t] : tensors) by_name.emplace(name, &t);
  for (const auto& [alias, canon] : aliases) {
    auto it = by_name.find(canon);
    out.emplace_back(alias, it != by_name.end() ? *it->second : at(canon));  // at() throws
  }
  return out;
}

SafetensorsFile load_safetensors(const std::string& path) { return Reader(path).read(); }

// ---- writer ------------------------------------------------------------------------------

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  auto bad = [&](const std::string& what) {
    throw ValueError("save_safetensors: " + path + ": " + what);
  };
  if (metadata.count(kAliasesMetadataKey)) {
    bad(std::string("metadata key '") + kAliasesMetadataKey + "' is reserved for tied tensors");
  }
  std::set<std::string> names;
  // Tied weights are the same view of the same storage: same data pointer, dtype and shape.
  std::map<std::tuple<const void*, DType, std::vector<int64_t>>, std::string> seen;
  std::map<std::string, std::string> aliases;
  std::vector<const std::pair<std::string, Tensor>*> stored;
  for (const auto& entry : tensors) {
    const auto& [name, t] = entry;
    if (name.empty() || name == kMetadata) bad("invalid tensor name '" + name + "'");
    if (!names.insert(name).second) bad("tensor name '" + name + "' appears more than once");
    if (!t.defined()) bad("tensor '" + name + "' is undefined");
    if (t.numel() > 0) {
      auto key = std::make_tuple(t.raw_data(), t.dtype(), t.shape().vec());
      auto [it, inserted] = seen.emplace(key, name);
      if (!inserted) {
        aliases[name] = it->second;
        continue;
      }
    }
    stored.push_back(&entry);
  }

  OrderedJson header = OrderedJson::object();
  if (!metadata.empty() || !aliases.empty()) {
    OrderedJson meta = OrderedJson::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    if (!aliases.empty()) {
      OrderedJson a = OrderedJson::object();
      for (const auto& [alias, canon] : aliases) a[alias] = canon;
      meta[kAliasesMetadataKey] = a.dump();
    }
    header[kMetadata] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const auto* entry : stored) {
    const Tensor& t = entry->second;
    header[entry->first] = {{"dtype", code_of(t.dtype())},
                            {"shape", t.shape().vec()},
                            {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  // Pad with spaces so the data buffer starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));

  atomic_write_file(path, [&](FileSink& sink) {
    sink.write(len, 8);
    sink.write(text.data(), text.size());
    for (const auto* entry : stored) sink.write(entry->second.raw_data(), entry->second.nbytes());
  });
}

}  // namespace kiln
