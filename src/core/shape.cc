#include "kiln/shape.h"

#include <string>

#include "kiln/error.h"

namespace kiln {

Shape::Shape(std::initializer_list<int64_t> dims)
    : Shape(std::span<const int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  for (int64_t d : dims) push_back(d);
}

void Shape::push_back(int64_t d) {
  if (rank_ >= kMaxRank) {
    throw ShapeError("shape: rank above the maximum of " + std::to_string(kMaxRank));
  }
  if (d < -1) throw ShapeError("shape: negative dim " + std::to_string(d));
  dims_[rank_++] = d;
}

int64_t Shape::dim(int i) const {
  int k = i < 0 ? i + rank_ : i;
  if (k < 0 || k >= rank_) {
    throw ValueError("shape: dim " + std::to_string(i) + " out of range for " + to_string(*this));
  }
  return dims_[k];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (int i = 0; i < rank_; ++i) {
    if (dims_[i] != o.dims_[i]) return false;
  }
  return true;
}

std::string to_string(const Shape& s) {
  std::string r = "[";
  for (int i = 0; i < s.rank(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

void contiguous_strides(const Shape& s, int64_t* strides) {
  int64_t st = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    strides[i] = st;
    st *= s[i];
  }
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  if (a == b) return a;
  int r = std::max(a.rank(), b.rank());
  Shape out;
  for (int i = 0; i < r; ++i) {
    int ia = i - (r - a.rank()), ib = i - (r - b.rank());
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      throw ShapeError(std::string(op) + ": shapes " + to_string(a) + " and " + to_string(b) +
                       " cannot be broadcast together");
    }
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

int normalize_axis(int64_t axis, int rank, const char* op) {
  int64_t k = axis < 0 ? axis + rank : axis;
  if (k < 0 || k >= rank) {
    throw ValueError(std::string(op) + ": axis " + std::to_string(axis) +
                     " is out of range for rank " + std::to_string(rank));
  }
  return static_cast<int>(k);
}

}  // namespace kiln
