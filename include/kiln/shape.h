// Shape: up to kMaxRank dims stored inline, so building and copying one never allocates.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

namespace kiln {

class Shape {
 public:
  static constexpr int kMaxRank = 8;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);  // throws ShapeError past kMaxRank or if < 0
  explicit Shape(std::span<const int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims) : Shape(std::span<const int64_t>(dims)) {}

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[i]; }
  int64_t& operator[](int i) { return dims_[i]; }
  // Dim i counted from the end when negative (-1 is the last); throws ValueError if out of range.
  int64_t dim(int i) const;
  int64_t numel() const;

  const int64_t* begin() const { return dims_; }
  const int64_t* end() const { return dims_ + rank_; }
  std::span<const int64_t> dims() const { return {dims_, static_cast<size_t>(rank_)}; }
  std::vector<int64_t> vec() const { return {begin(), end()}; }

  void push_back(int64_t d);  // throws ShapeError past kMaxRank

  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  int64_t dims_[kMaxRank] = {};
  int rank_ = 0;
};

// "[2, 3, 4]"
std::string to_string(const Shape& s);

// Row-major strides in elements.
void contiguous_strides(const Shape& s, int64_t* strides);

// NumPy broadcasting of two shapes; throws ShapeError naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Normalizes a possibly negative axis against `rank`; throws ValueError naming `op`.
int normalize_axis(int64_t axis, int rank, const char* op);

}  // namespace kiln
