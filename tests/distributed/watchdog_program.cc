// A 2-rank training job in which one rank dies or hangs, for watchdog_test.sh:
//   mpirun -np 2 kiln_distributed_watchdog_program kill1|hang1|hang0|mismatch DIR
// trains the mlp on toy data with a 3 s timeout, rank 0 checkpointing to DIR/ckpt.safetensors
// every epoch; at step 10 (in epoch 3) rank 1 kills itself (SIGKILL) or the named rank stops
// answering (sleeps forever), or (mismatch) rank 1 stops training and calls finalize() while
// rank 0 waits for gradients: both alive, in collectives that never meet. The job must end
// with one error naming the rank (or saying that all are alive).
//   kiln_distributed_watchdog_program verify DIR
// then checks, in one process, that the checkpoint written before is intact.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "distributed/toy.h"
#include "kiln/distributed.h"
#include "kiln/nn/callbacks.h"
#include "kiln/nn/checkpoint.h"
#include "kiln/nn/models.h"
#include "kiln/nn/training.h"
#include "kiln/threading.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s kill1|hang1|hang0|mismatch|verify DIR\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1], ckpt = std::string(argv[2]) + "/ckpt.safetensors";
  kiln::set_num_threads(1);
  if (mode == "verify") {
    auto model = kiln::make_mlp();
    kiln::load_weights(*model, ckpt);  // throws (exit code != 0) unless intact
    std::printf("checkpoint intact: %s\n", ckpt.c_str());
    return 0;
  }
  kiln::distributed::Options o;
  o.timeout_seconds = 3;
  kiln::distributed::init(o);
  const int rank = kiln::distributed::rank();
  const int victim = mode == "hang0" ? 0 : 1;
  auto [x, y] = kiln::testing::toy_images(64, 1);
  int batches = 0;
  kiln::Dataset data = kiln::Dataset(x, y).shuffle(0).batch(16).map([&](kiln::Batch b) {
    if (++batches == 10 && rank == victim) {
      std::fprintf(stderr, "rank %d: %s at step 10\n", rank,
                   mode == "kill1"      ? "dying"
                   : mode == "mismatch" ? "finalizing"
                                        : "hanging");
      std::fflush(stderr);
      if (mode == "kill1") raise(SIGKILL);
      if (mode == "mismatch") {
        kiln::distributed::finalize();  // waits for a barrier rank 0 never joins
        std::exit(4);
      }
      for (;;) pause();
    }
    return b;
  });
  auto model = kiln::make_mlp();
  kiln::SGD opt(0.01);
  kiln::FitOptions fo;
  fo.epochs = 100;
  fo.verbose = 0;
  fo.distributed = true;
  fo.callbacks.push_back(std::make_shared<kiln::ModelCheckpoint>(ckpt));
  kiln::fit(*model, opt, kiln::SparseCategoricalCrossentropy(), data, fo);
  std::fprintf(stderr, "rank %d: training ended without the failure\n", rank);
  return 3;
}
