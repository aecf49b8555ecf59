// File output that never leaves a half-written file, and the safetensors format
// (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, N bytes of
// JSON header, then the raw little-endian data buffer.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/tensor.h"

namespace kiln {

// ---- atomic writes -----------------------------------------------------------------------

// Appends bytes to the temp file of an atomic write. Throws kiln::Error on an I/O error.
class FileSink {
 public:
  virtual ~FileSink() = default;
  virtual void write(const void* data, size_t n) = 0;
};

// Replaces `path` atomically: `fill` writes the content to a new temp file in the same
// directory, which is then fsync'ed and renamed over `path`, and the directory is fsync'ed.
// On any failure (including an exception thrown by `fill`, which is rethrown as is) the temp
// file is removed and any existing `path` is left untouched. I/O failures throw kiln::Error
// naming the path, the step and the system's reason. (Only a failed fsync of the directory,
// after the rename, throws with the new file already in place.)
void atomic_write_file(const std::string& path, const std::function<void(FileSink&)>& fill);
void atomic_write_file(const std::string& path, std::string_view contents);

// ---- safetensors -------------------------------------------------------------------------

// The __metadata__ key under which save_safetensors records tied tensors, as a JSON object
// {"alias": "canonical name", ...} serialized to a string (safetensors metadata values are
// strings).
inline constexpr const char* kAliasesMetadataKey = "kiln.aliases";

struct SafetensorsFile {
  // The stored tensors in header order (the order they were saved in).
  std::vector<std::pair<std::string, Tensor>> tensors;
  // __metadata__ without kAliasesMetadataKey.
  std::map<std::string, std::string> metadata;
  // alias -> canonical name (a key of `tensors`); the alias shares the canonical's Tensor.
  std::map<std::string, std::string> aliases;

  // The tensor stored under `name` or aliased to it; throws ValueError if there is none.
  const Tensor& at(const std::string& name) const;
  bool contains(const std::string& name) const;
  // `tensors` followed by one entry per alias holding the same Tensor handle (tied again).
  std::vector<std::pair<std::string, Tensor>> all() const;
};

// Writes `tensors` (in this order) and `metadata` to `path` atomically. Entries that are the
// same tensor (same dtype, shape and data pointer, numel > 0: tied weights) are written once,
// under the first name; the others are recorded in __metadata__[kAliasesMetadataKey].
// Throws ValueError for an empty, duplicate or "__metadata__" name, an undefined tensor, or a
// metadata key equal to kAliasesMetadataKey; kiln::Error when the file cannot be written.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a safetensors file written by any conforming writer (dtypes F32 F64 I32 I64 I8 U8 BOOL).
// Validates everything before trusting it: the file length, the header length (<= file length
// - 8 and <= 100 MB), the JSON (an object nested no deeper than {name: {field: [values]}},
// refused while parsing; each tensor has exactly a known dtype, a shape of non-negative ints
// and data_offsets [begin, end] with begin <= end <= buffer size and end - begin == numel *
// itemsize without overflow), that the entries cover the data buffer
// contiguously without overlap, that __metadata__ maps strings to strings, that BOOL bytes are
// 0 or 1, and the kiln aliases. Throws FormatError naming the file, the tensor or field and
// what was expected (names and values from the file cut to 80 characters). Never reads out of
// bounds; allocates only what the file really holds.
SafetensorsFile load_safetensors(const std::string& path);

// ---- .npy (NumPy) ---------------------------------------------------------------------------

// Writes `t` as a .npy file (format 1.0, C order, little-endian; descr <f4 <f8 <i4 <i8 |i1 |u1
// |b1 for float32 float64 int32 int64 int8 uint8 bool), atomically. numpy.load reads it.
void save_npy(const std::string& path, const Tensor& t);
// The bytes save_npy writes.
std::string npy_bytes(const Tensor& t);

// Reads a .npy file of format 1.0, 2.0 or 3.0 holding one of kiln's dtypes (little-endian or
// byte-order-free descr). Everything is checked before it is trusted: the magic, the version,
// the header length against the file, the header as a dict of exactly 'descr',
// 'fortran_order' and 'shape' (a strict parser), the descr (big-endian, object and other
// dtypes refused by name), C order (Fortran order refused: "save with np.ascontiguousarray"),
// the shape against the data bytes without overflow (too few and too many refused), bool
// bytes 0 or 1. Throws FormatError naming the file and what was wrong. Never reads past the
// file; allocates only what the file holds.
Tensor load_npy(const std::string& path);
// The same for bytes in memory; `name` stands for the file in messages.
Tensor parse_npy(std::string_view bytes, const std::string& name);

}  // namespace kiln
