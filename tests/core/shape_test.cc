#include "kiln/shape.h"

#include <gtest/gtest.h>

#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::expect_error;

TEST(Shape, BasicsAndNumel) {
  Shape s{2, 3, 4};
  EXPECT_EQ(s.rank(), 3);
  EXPECT_EQ(s.numel(), 24);
  EXPECT_EQ(s.dim(-1), 4);
  EXPECT_EQ(to_string(s), "[2, 3, 4]");
  EXPECT_EQ(Shape{}.numel(), 1);
  EXPECT_EQ((Shape{0, 5}.numel()), 0);
  EXPECT_EQ(to_string(Shape{}), "[]");
}

TEST(Shape, RankLimitAndNegativeDimAreErrors) {
  expect_error<ShapeError>([] { Shape s{1, 1, 1, 1, 1, 1, 1, 1, 1}; }, {"rank", "8"});
  expect_error<ShapeError>([] { Shape s{2, -3}; }, {"negative dim", "-3"});
  expect_error<ValueError>([] { Shape{2, 3}.dim(2); }, {"dim 2", "[2, 3]"});
}

TEST(Shape, Broadcast) {
  EXPECT_EQ(broadcast_shapes(Shape{3, 1, 5}, Shape{4, 1}, "add"), (Shape{3, 4, 5}));
  EXPECT_EQ(broadcast_shapes(Shape{}, Shape{2, 2}, "add"), (Shape{2, 2}));
  EXPECT_EQ(broadcast_shapes(Shape{0, 3}, Shape{1, 3}, "add"), (Shape{0, 3}));
  expect_error<ShapeError>(
      [] {
        broadcast_shapes(Shape{2, 3}, Shape{4}, "mul");
      },
      {"mul", "[2, 3]", "[4]"});
}

TEST(Shape, NormalizeAxis) {
  EXPECT_EQ(normalize_axis(-1, 3, "sum"), 2);
  EXPECT_EQ(normalize_axis(0, 3, "sum"), 0);
  expect_error<ValueError>([] { normalize_axis(3, 3, "sum"); }, {"sum", "axis 3", "rank 3"});
}

}  // namespace
}  // namespace kiln
