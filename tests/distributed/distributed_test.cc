// kiln::distributed in one process (not launched by mpirun): rank 0 of 1, and a data-parallel
// fit that is exactly the ordinary one. mpi_checks.cc runs the same over 2 ranks.
#include "kiln/distributed.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>

#include "distributed/toy.h"
#include "kiln/nn/models.h"
#include "kiln/nn/training.h"
#include "testing/op_check.h"

namespace kiln {
namespace {

using testing::expect_error;

// In the order of a process's life (ctest runs each alone; run together they still pass).

TEST(Distributed, InitErrorsChangeNothing) {
  distributed::Options o;
  o.bucket_bytes = 0;
  expect_error<ValueError>([&] { distributed::init(o); }, {"bucket_bytes", ">= 1", "got 0"});
  o = {};
  o.timeout_seconds = 0;
  expect_error<ValueError>([&] { distributed::init(o); }, {"timeout_seconds", "> 0", "got 0"});
  o.timeout_seconds = std::numeric_limits<double>::infinity();
  expect_error<ValueError>([&] { distributed::init(o); }, {"timeout_seconds", "finite"});
  EXPECT_FALSE(distributed::initialized());
}

TEST(Distributed, LaunchedByMpirunWithoutMpiSupportIsAnError) {
  if (distributed::built_with_mpi()) GTEST_SKIP() << "this build has MPI";
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  expect_error<Error>([] { distributed::init(); },
                      {"2 processes", "built without MPI", "libopenmpi-dev"});
  unsetenv("OMPI_COMM_WORLD_SIZE");
}

TEST(Distributed, WithoutMpirunThisIsOneProcess) {
  EXPECT_EQ(distributed::world_size(), 1);  // before init()
  distributed::Options o;
  o.bucket_bytes = 1000;
  distributed::init(o);
  EXPECT_TRUE(distributed::initialized());
  EXPECT_EQ(distributed::rank(), 0);
  EXPECT_EQ(distributed::world_size(), 1);
  EXPECT_EQ(distributed::options().bucket_bytes, 1000);
  distributed::init();  // again: only the options change
  EXPECT_EQ(distributed::options().bucket_bytes, int64_t{25} << 20);
}

TEST(Distributed, DataParallelFitInOneProcessIsThePlainFit) {
  distributed::init();
  auto [x, y] = testing::toy_images(96, 3);
  auto run = [&, x = x, y = y](bool dist) {
    auto model = make_mlp();
    uint64_t seed = 11;  // the same initial weights for both runs (names differ)
    for (Variable v : model->weights()) v.assign(random_uniform(v.shape(), -0.1, 0.1, seed++));
    Adam opt(1e-3);
    FitOptions o;
    o.epochs = 2;
    o.verbose = 0;
    o.distributed = dist;
    History h =
        fit(*model, opt, SparseCategoricalCrossentropy(), Dataset(x, y).shuffle(4).batch(32), o);
    return std::make_pair(h, model);
  };
  auto [h1, m1] = run(false);
  auto [h2, m2] = run(true);
  EXPECT_EQ(h1["loss"], h2["loss"]);
  EXPECT_EQ(h1["accuracy"], h2["accuracy"]);
  EXPECT_EQ(testing::relative_distance(*m1, *m2), 0.0);
  distributed::Stats s = distributed::stats();
  EXPECT_EQ(s.steps, 6);
  distributed::reset_stats();
  EXPECT_EQ(distributed::stats().steps, 0);
}

TEST(Distributed, AbortJobInOneProcessExitsWithCode1) {
  EXPECT_EXIT(distributed::abort_job("rank 3 is on fire"), ::testing::ExitedWithCode(1),
              "kiln: error: rank 3 is on fire");
}

TEST(Distributed, FinalizeEndsTraining) {
  distributed::init();
  distributed::finalize();
  distributed::finalize();  // idempotent
  EXPECT_FALSE(distributed::initialized());
  auto [x, y] = testing::toy_images(8, 1);
  auto model = make_mlp();
  SGD opt(0.1);
  FitOptions o;
  o.verbose = 0;
  o.distributed = true;
  expect_error<StateError>([&] { fit(*model, opt, SparseCategoricalCrossentropy(), x, y, o); },
                           {"FitOptions::distributed", "after kiln::distributed::finalize()"});
  expect_error<StateError>([] { distributed::init(); }, {"init", "after finalize()"});
}

}  // namespace
}  // namespace kiln
