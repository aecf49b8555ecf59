// kiln's exceptions. Every error names what was wrong: the op and every shape for ShapeError,
// the file and field for FormatError. User input is never guarded by assert.
#pragma once

#include <stdexcept>
#include <string>

namespace kiln {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Shapes that do not fit an op or a layer: "matmul: shapes [2,3] and [4,5] ...".
class ShapeError : public Error {
 public:
  using Error::Error;
};

// A dtype an op does not take, or two inputs whose dtypes differ.
class DTypeError : public Error {
 public:
  using Error::Error;
};

// A bad value: a negative axis out of range, a probability outside [0, 1), a bad flag.
class ValueError : public Error {
 public:
  using Error::Error;
};

// A bad file: names the file, the field and what was expected.
class FormatError : public Error {
 public:
  using Error::Error;
};

// Misuse of an object's state: reading an unbuilt layer's weights, a used-up tape.
class StateError : public Error {
 public:
  using Error::Error;
};

}  // namespace kiln
