// Tests for src/ops/shape.cc: reshape, transpose, concat, slice, gather, one_hot, pad and the
// gradient ops slice_grad and gather_grad.
#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "ops/op_def.h"
#include "ops/registry.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::all_close;
using testing::check_fast_matches_reference;
using testing::check_gradients;
using testing::expect_error;
using testing::random_tensor;
using V = std::vector<Tensor>;

constexpr int64_t kEnd = std::numeric_limits<int64_t>::max();

Tensor iota(const Shape& s, DType dtype = float32) {
  return reshape(arange(0, static_cast<double>(s.numel()), 1, dtype), s);
}
std::vector<float> vals(const Tensor& t) { return t.to_vector<float>(); }

// ---- reshape -------------------------------------------------------------------------------

TEST(Reshape, ValuesAndInference) {
  Tensor x = iota({2, 3});
  Tensor y = reshape(x, {3, -1});
  EXPECT_EQ(y.shape(), (Shape{3, 2}));
  EXPECT_EQ(vals(y), vals(x));
  EXPECT_EQ(reshape(x, {6}).shape(), (Shape{6}));
  EXPECT_EQ(reshape(scalar(4), {1, 1}).shape(), (Shape{1, 1}));
  EXPECT_EQ(reshape(zeros({0, 3}), {3, 0}).shape(), (Shape{3, 0}));
  Tensor b = from_vector<bool>({true, false, true, true}, {2, 2});
  EXPECT_EQ(reshape(b, {4}).to_vector<int>(), (std::vector<int>{1, 0, 1, 1}));
}

TEST(Reshape, Grad) {
  check_gradients(
      [](const V& v) {
        return reshape(v[0], {4, -1});
      },
      {random_tensor({2, 6}, float64, 1)});
}

TEST(Reshape, Errors) {
  Tensor x = zeros({2, 3});
  expect_error<ShapeError>([&] { reshape(x, {4}); }, {"reshape", "[2, 3]", "[4]"});
  expect_error<ShapeError>([&] { reshape(x, {-1, -1}); }, {"reshape", "more than one -1"});
  expect_error<ShapeError>([&] { reshape(x, {4, -1}); }, {"reshape", "[2, 3]", "[4, -1]"});
}

// ---- transpose -----------------------------------------------------------------------------

TEST(Transpose, Values) {
  Tensor x = iota({2, 3});
  Tensor t = transpose(x);
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_EQ(vals(t), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  Tensor y = iota({2, 3, 4});
  Tensor z = transpose(y, {1, -1, 0});  // negative entries count from the end
  EXPECT_EQ(z.shape(), (Shape{3, 4, 2}));
  // z[i][j][k] = y[k][i][j]
  std::vector<float> zv = vals(z);
  EXPECT_EQ(zv[(1 * 4 + 2) * 2 + 1], 1 * 12 + 1 * 4 + 2);
  EXPECT_EQ(transpose(y).shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(transpose(scalar(2)).item<float>(), 2);
}

TEST(Transpose, FastMatchesReference) {
  std::vector<Shape> shapes = {{33, 65},     {1, 7},     {3, 1, 5, 7}, {2, 3, 4},
                               {4, 64, 129}, {300, 301}, {0, 3},       {5, 1, 1}};
  uint64_t seed = 3;
  for (const Shape& s : shapes) {
    std::vector<int> perm(s.rank());
    std::iota(perm.begin(), perm.end(), 0);
    do {
      SCOPED_TRACE(to_string(s));
      Tensor x = random_tensor(s, float32, seed++);
      check_fast_matches_reference([&] { return transpose(x, perm); }, 0, 0);
    } while (std::next_permutation(perm.begin(), perm.end()));
  }
  for (DType dt : {float64, int64, int8, boolean}) {
    Tensor x = cast(random_tensor({17, 40}, float64, 5, -50, 50), dt);
    check_fast_matches_reference([&] { return transpose(x); }, 0, 0);
    Tensor y = cast(random_tensor({3, 9, 5}, float64, 6, -50, 50), dt);
    check_fast_matches_reference([&] { return transpose(y, {2, 0, 1}); }, 0, 0);
  }
}

TEST(Transpose, Grad) {
  Tensor x = random_tensor({2, 3, 4}, float64, 7);
  check_gradients([](const V& v) { return transpose(v[0], {1, 2, 0}); }, {x});
  check_gradients([](const V& v) { return transpose(v[0]); }, {x});
}

TEST(Transpose, Errors) {
  Tensor x = zeros({2, 3});
  expect_error<ValueError>(
      [&] {
        transpose(x, {0, 0});
      },
      {"transpose", "[0, 0]", "not a permutation", "[2, 3]"});
  expect_error<ValueError>([&] { transpose(x, {0}); }, {"transpose", "[0]", "[2, 3]"});
  expect_error<ValueError>([&] { transpose(x, {0, 2}); }, {"transpose", "[0, 2]"});
  expect_error<ValueError>([&] { transpose(x, std::vector<int>(9, 0)); }, {"transpose", "9"});
}

// ---- concat --------------------------------------------------------------------------------

TEST(Concat, Values) {
  Tensor a = iota({2, 2}), b = full({2, 1}, 9);
  EXPECT_EQ(vals(concat({a, b}, 1)), (std::vector<float>{0, 1, 9, 2, 3, 9}));
  EXPECT_EQ(vals(concat({a, b}, -1)), (std::vector<float>{0, 1, 9, 2, 3, 9}));
  EXPECT_EQ(vals(concat({a, a}, 0)), (std::vector<float>{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(concat({a, zeros({2, 0}), b}, 1).shape(), (Shape{2, 3}));
  // More inputs than the dispatcher takes at once.
  std::vector<Tensor> many;
  for (int i = 0; i < 37; ++i) many.push_back(full({1, 2}, i));
  Tensor m = concat(many, 0);
  EXPECT_EQ(m.shape(), (Shape{37, 2}));
  for (int i = 0; i < 37; ++i) EXPECT_EQ(vals(m)[2 * i + 1], i);
}

TEST(Concat, FastMatchesReference) {
  Tensor a = random_tensor({3, 1, 5}, float32, 8), b = random_tensor({3, 4, 5}, float32, 9);
  check_fast_matches_reference([&] { return concat({a, b, a}, 1); }, 0, 0);
  Tensor c = random_tensor({300, 129}, float32, 10), d = random_tensor({300, 3}, float32, 11);
  check_fast_matches_reference([&] { return concat({c, d}, 1); }, 0, 0);
  check_fast_matches_reference([&] { return concat({c, c}, 0); }, 0, 0);
  Tensor i = cast(a, int8);
  check_fast_matches_reference([&] { return concat({i, i}, 2); }, 0, 0);
}

TEST(Concat, Grad) {
  check_gradients(
      [](const V& v) {
        return concat({v[0], v[1], v[0]}, 1);
      },
      {random_tensor({2, 3}, float64, 12), random_tensor({2, 1}, float64, 13)});
  std::vector<Tensor> many;
  for (int i = 0; i < 18; ++i) many.push_back(random_tensor({1, 2}, float64, 100 + i));
  check_gradients([](const V& v) { return concat(v, 0); }, many);
}

TEST(Concat, Errors) {
  Tensor a = zeros({2, 3});
  expect_error<ShapeError>(
      [&] {
        concat({a, zeros({3, 3})}, 1);
      },
      {"concat", "[2, 3]", "[3, 3]", "axis 1"});
  expect_error<ShapeError>([&] { concat({a, zeros({2, 3, 1})}, 0); }, {"concat", "[2, 3, 1]"});
  expect_error<DTypeError>(
      [&] {
        concat({a, zeros({2, 3}, int32)}, 0);
      },
      {"concat", "float32", "int32"});
  expect_error<ShapeError>([&] { concat({scalar(1), scalar(2)}, 0); }, {"concat", "rank-0"});
  expect_error<ValueError>([&] { concat({a}, 2); }, {"concat", "axis 2", "rank 2"});
  expect_error<ValueError>([&] { concat({}, 0); }, {"concat", "no tensors"});
}

// ---- slice ---------------------------------------------------------------------------------

TEST(Slice, PythonSemantics) {
  Tensor x = iota({10});
  EXPECT_EQ(vals(slice(x, {2}, {5})), (std::vector<float>{2, 3, 4}));
  EXPECT_EQ(vals(slice(x, {-3}, {kEnd})), (std::vector<float>{7, 8, 9}));
  EXPECT_EQ(vals(slice(x, {1}, {-1}, {3})), (std::vector<float>{1, 4, 7}));
  EXPECT_EQ(vals(slice(x, {-100}, {100}, {4})), (std::vector<float>{0, 4, 8}));  // clamped
  EXPECT_EQ(slice(x, {6}, {2}).shape(), (Shape{0}));
  EXPECT_EQ(slice(x, {12}, {20}).shape(), (Shape{0}));
  Tensor y = iota({3, 4});
  Tensor s = slice(y, {1}, {3});  // dims past begins are taken whole
  EXPECT_EQ(s.shape(), (Shape{2, 4}));
  EXPECT_EQ(vals(s)[0], 4);
  Tensor c = slice(y, {0, 1}, {kEnd, kEnd}, {2, 2});
  EXPECT_EQ(vals(c), (std::vector<float>{1, 3, 9, 11}));
}

TEST(Slice, FastMatchesReference) {
  Tensor x = random_tensor({5, 1, 7, 9}, float32, 14);
  check_fast_matches_reference(
      [&] {
        return slice(x, {1, 0, -5}, {-1, 1, kEnd}, {2, 1, 2});
      },
      0, 0);
  check_fast_matches_reference([&] { return slice(x, {0, 0, 0, 3}, {5, 1, 7, 8}); }, 0, 0);
  Tensor big = random_tensor({400, 300}, float32, 15);
  check_fast_matches_reference([&] { return slice(big, {3, 5}, {399, 290}); }, 0, 0);
  check_fast_matches_reference([&] { return slice(big, {0, 1}, {kEnd, kEnd}, {3, 2}); }, 0, 0);
  Tensor i = cast(x, int64);
  check_fast_matches_reference([&] { return slice(i, {2}, {4}); }, 0, 0);
}

TEST(Slice, Grad) {
  Tensor x = random_tensor({4, 5, 3}, float64, 16);
  check_gradients([](const V& v) { return slice(v[0], {1, -4}, {3, kEnd}, {1, 2}); }, {x});
  check_gradients([](const V& v) { return slice(v[0], {0, 0, 1}, {4, 5, 2}); }, {x});
}

TEST(Slice, SliceGradOp) {
  Tensor g = from_vector<float>({1, 2}, {2});
  Attrs a{1, 5, 2};                // slice 1:5:2 of a [5] input, whose shape the second input gives
  Tensor like = zeros({5}, int8);  // any dtype: only the shape is read
  Tensor out = run_op(ops::kSliceGrad, {g, like}, a);
  EXPECT_EQ(vals(out), (std::vector<float>{0, 1, 0, 2, 0}));
  Tensor g2 = random_tensor({100, 300}, float32, 17);
  Attrs b{0, kEnd, 2, 1, kEnd, 2};
  Tensor like2 = zeros({200, 600});
  check_fast_matches_reference([&] { return run_op(ops::kSliceGrad, {g2, like2}, b); }, 0, 0);
  // Its own gradient (a slice), e.g. for second-order gradients.
  check_gradients(
      [&](const V& v) {
        return run_op(ops::kSliceGrad, {v[0], like}, a);
      },
      {random_tensor({2}, float64, 18)});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kSliceGrad, {zeros({3}), like}, a);
      },
      {"slice_grad", "[3]", "[2]", "[5]"});
}

TEST(Slice, Errors) {
  Tensor x = zeros({2, 3});
  expect_error<ValueError>([&] { slice(x, {0}, {1}, {0}); }, {"slice", "step 0", "dim 0"});
  expect_error<ValueError>([&] { slice(x, {0, 0}, {1, 1}, {1, -1}); }, {"slice", "step -1"});
  expect_error<ValueError>(
      [&] {
        slice(x, {0, 0, 0}, {1, 1, 1});
      },
      {"slice", "3 begins", "[2, 3]", "rank 2"});
  expect_error<ValueError>([&] { slice(x, {0, 0}, {1}); }, {"slice", "2 begins", "1 ends"});
  expect_error<ValueError>([&] { slice(x, {0}, {1}, {1, 1}); }, {"slice", "2 steps"});
}

// ---- gather --------------------------------------------------------------------------------

TEST(Gather, TensorFlowSemantics) {
  Tensor x = iota({3, 4});
  Tensor r = gather(x, from_vector<int32_t>({2, 0, 2}));
  EXPECT_EQ(r.shape(), (Shape{3, 4}));
  EXPECT_EQ(vals(r), (std::vector<float>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}));
  Tensor c = gather(x, from_vector<int64_t>({3, 1, 1, 0}, {2, 2}), 1);
  EXPECT_EQ(c.shape(), (Shape{3, 2, 2}));
  EXPECT_EQ(vals(c), (std::vector<float>{3, 1, 1, 0, 7, 5, 5, 4, 11, 9, 9, 8}));
  Tensor s = gather(x, scalar(1, int64), -1);  // a rank-0 index drops the axis
  EXPECT_EQ(s.shape(), (Shape{3}));
  EXPECT_EQ(vals(s), (std::vector<float>{1, 5, 9}));
  EXPECT_EQ(gather(x, zeros({0}, int32)).shape(), (Shape{0, 4}));
  Tensor b = cast(x, boolean);
  EXPECT_EQ(gather(b, from_vector<int32_t>({0}), 1).to_vector<int>(), (std::vector<int>{0, 1, 1}));
}

TEST(Gather, FastMatchesReference) {
  Tensor x = random_tensor({50, 700}, float32, 19);
  Tensor idx = cast(random_tensor({80}, float64, 20, 0, 50), int32);
  check_fast_matches_reference([&] { return gather(x, idx); }, 0, 0);
  Tensor idx2 = cast(random_tensor({5, 7}, float64, 21, 0, 700), int64);
  check_fast_matches_reference([&] { return gather(x, idx2, 1); }, 0, 0);
  Tensor g = random_tensor({80, 700}, float32, 22);
  check_fast_matches_reference(
      [&] {
        return run_op(ops::kGatherGrad, {g, idx, x}, Attrs{0});
      },
      1e-6, 1e-6);
}

TEST(Gather, GradWithRepeatedIndices) {
  Tensor idx = from_vector<int64_t>({0, 2, 0, 0, 3});
  check_gradients([&](const V& v) { return gather(v[0], idx); },
                  {random_tensor({4, 3}, float64, 23)});
  Tensor idx2 = from_vector<int32_t>({1, 1, 0, 1}, {2, 2});
  check_gradients([&](const V& v) { return gather(v[0], idx2, 1); },
                  {random_tensor({2, 3, 2}, float64, 24)});
  // Repeats add up (row 0 three times), in both kernels.
  Tensor x = zeros({4, 3});
  GradientTape tape;
  tape.watch(x);
  Tensor gx = tape.gradient(sum(gather(x, idx)), {x})[0];
  EXPECT_EQ(vals(gx), (std::vector<float>{3, 3, 3, 0, 0, 0, 1, 1, 1, 1, 1, 1}));
  ForceReferenceScope ref;
  Tensor gr = run_op(ops::kGatherGrad, {ones({5, 3}), idx, x}, Attrs{0});
  EXPECT_TRUE(all_close(gr, gx, 0, 0));
}

TEST(Gather, GatherGradOp) {
  Tensor idx = from_vector<int32_t>({2, 2, 0});
  Attrs a{1};                   // axis 1
  Tensor like = zeros({2, 3});  // x's shape: only the shape is read
  check_gradients(
      [&](const V& v) {
        return run_op(ops::kGatherGrad, {v[0], idx, like}, a);
      },
      {random_tensor({2, 3}, float64, 25)});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kGatherGrad, {zeros({2, 4}), idx, like}, a);
      },
      {"gather_grad", "[2, 4]", "[2, 3]"});
  expect_error<DTypeError>(
      [&] {
        run_op(ops::kGatherGrad, {zeros({2, 3}, int32), idx, like}, a);
      },
      {"gather_grad", "int32"});
}

TEST(Gather, Errors) {
  Tensor x = zeros({3, 5});
  expect_error<ValueError>(
      [&] {
        gather(x, from_vector<int32_t>({0, 7}), 1);
      },
      {"gather", "index 7", "size 5", "position 1"});
  expect_error<ValueError>([&] { gather(x, from_vector<int64_t>({-1})); },
                           {"gather", "index -1", "size 3"});
  {
    ForceReferenceScope ref;
    expect_error<ValueError>([&] { gather(x, from_vector<int32_t>({3})); },
                             {"gather", "index 3", "size 3"});
  }
  expect_error<DTypeError>([&] { gather(x, zeros({2})); }, {"gather", "int32 or int64", "float32"});
  expect_error<ValueError>([&] { gather(x, zeros({2}, int32), 2); }, {"gather", "axis 2"});
  expect_error<ShapeError>(
      [&] {
        gather(zeros({1, 1, 1, 1, 1}), zeros({1, 1, 1, 1, 1}, int32));
      },
      {"gather", "rank above 8"});
}

// ---- one_hot -------------------------------------------------------------------------------

TEST(OneHot, Values) {
  Tensor i = from_vector<int32_t>({2, 0, 5, -1});
  Tensor o = one_hot(i, 3);
  EXPECT_EQ(o.shape(), (Shape{4, 3}));
  EXPECT_EQ(vals(o), (std::vector<float>{0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
  Tensor o2 = one_hot(from_vector<int64_t>({1, 0}, {2, 1}), 2, int32);
  EXPECT_EQ(o2.shape(), (Shape{2, 1, 2}));
  EXPECT_EQ(o2.to_vector<int32_t>(), (std::vector<int32_t>{0, 1, 1, 0}));
  EXPECT_EQ(one_hot(scalar(1, int64), 2, boolean).to_vector<int>(), (std::vector<int>{0, 1}));
  EXPECT_EQ(one_hot(i, 0).shape(), (Shape{4, 0}));
}

TEST(OneHot, Errors) {
  expect_error<ValueError>([&] { one_hot(zeros({2}, int32), -1); }, {"one_hot", "depth -1"});
  expect_error<DTypeError>([&] { one_hot(zeros({2}), 3); }, {"one_hot", "float32"});
  expect_error<ShapeError>(
      [&] {
        one_hot(zeros({1, 1, 1, 1, 1, 1, 1, 1}, int32), 3);
      },
      {"one_hot", "rank above 8"});
}

// ---- pad -----------------------------------------------------------------------------------

TEST(Pad, Values) {
  Tensor x = iota({2, 2});
  Tensor p = pad(x, {{1, 0}, {0, 2}}, -1);
  EXPECT_EQ(p.shape(), (Shape{3, 4}));
  EXPECT_EQ(vals(p), (std::vector<float>{-1, -1, -1, -1, 0, 1, -1, -1, 2, 3, -1, -1}));
  Tensor lead = pad(x, {{0, 1}});  // fewer pairs than dims: only the leading dims
  EXPECT_EQ(lead.shape(), (Shape{3, 2}));
  EXPECT_EQ(vals(lead), (std::vector<float>{0, 1, 2, 3, 0, 0}));
  Tensor i = pad(from_vector<int8_t>({5}), {{2, 1}}, -7);
  EXPECT_EQ(i.to_vector<int>(), (std::vector<int>{-7, -7, 5, -7}));
  EXPECT_EQ(pad(zeros({0, 2}), {{1, 1}}).shape(), (Shape{2, 2}));
}

TEST(Pad, FastMatchesReference) {
  Tensor x = random_tensor({2, 30, 31, 3}, float32, 26);
  check_fast_matches_reference([&] { return pad(x, {{0, 0}, {1, 2}, {3, 0}, {0, 1}}, 0.5); }, 0, 0);
  Tensor big = random_tensor({300, 200}, float32, 27);
  check_fast_matches_reference([&] { return pad(big, {{5, 5}, {7, 1}}); }, 0, 0);
}

TEST(Pad, Grad) {
  check_gradients(
      [](const V& v) {
        return pad(v[0], {{1, 2}, {0, 1}}, 3);
      },
      {random_tensor({3, 2, 2}, float64, 28)});
}

TEST(Pad, Errors) {
  Tensor x = zeros({2, 3});
  expect_error<ValueError>([&] { pad(x, {{0, 0}, {-1, 0}}); }, {"pad", "negative", "dim 1"});
  expect_error<ValueError>([&] { pad(x, {{0, 0}, {0, 0}, {1, 1}}); }, {"pad", "3 pairs", "[2, 3]"});
  expect_error<ValueError>([&] { pad(zeros({2}, int8), {{1, 1}}, 200); }, {"pad", "200", "int8"});
  expect_error<ValueError>([&] { pad(zeros({2}, int32), {{1, 1}}, 0.5); }, {"pad", "int32"});
}

// Graphs and deployment files build ops from attrs directly: infer checks them too.
TEST(ShapeOps, ErrorsFromRawAttrs) {
  CheckAttrsScope off(nullptr, /*enabled=*/false);  // reach each op's own checks
  Tensor x = zeros({2, 3});
  expect_error<ShapeError>(
      [&] {
        run_op(ops::kReshape, {x}, Attrs{-2, -3});
      },
      {"reshape", "negative dim -2"});
  expect_error<ValueError>([&] { run_op(ops::kSlice, {x}, Attrs{0, 1}); }, {"slice", "triples"});
  expect_error<ValueError>(
      [&] {
        run_op(ops::kOneHot, {zeros({2}, int32)}, Attrs{3, 99});
      },
      {"one_hot", "dtype code 99"});
  expect_error<ValueError>(
      [&] { slice(x, std::vector<int64_t>(9, 0), std::vector<int64_t>(9, 1)); },
      {"slice", "9 begins"});
  expect_error<ValueError>(
      [&] {
        pad(x, std::vector<std::pair<int64_t, int64_t>>(9, {0, 0}));
      },
      {"pad", "9 pairs"});
  Attrs gg{0};
  Tensor like = zeros({2, 3});
  expect_error<DTypeError>(
      [&] {
        run_op(ops::kGatherGrad, {zeros({1, 3}), zeros({1}), like}, gg);
      },
      {"gather_grad", "int32 or int64", "float32"});
  expect_error<ValueError>(
      [&] {
        run_op(ops::kGatherGrad, {zeros({1, 3}), from_vector<int32_t>({2}), like}, gg);
      },
      {"gather_grad", "index 2", "size 2"});
}

}  // namespace
}  // namespace kiln
