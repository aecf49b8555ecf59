// Data-parallel training over MPI (OpenMPI on Debian: libopenmpi-dev, openmpi-bin).
//
//   kiln::distributed::init();                     // rank and world size from mpirun
//   kiln::FitOptions o;
//   o.distributed = true;                          // shards batches, averages gradients
//   kiln::fit(*model, opt, loss, train, o);        // the same call on every rank
//
//   mpirun -np 2 ./my_trainer                      // or: mpirun -np 2 kiln train --distributed
//
// Gradients are summed in buckets of about Options::bucket_bytes, each bucket's non-blocking
// all-reduce starting as soon as the backward pass has finished its gradients (buckets follow
// the reverse order of the variables, as the backward pass produces them), so communication
// overlaps the rest of the backward pass; the optimizer steps after the last bucket arrives.
// Every wait on another rank has a deadline: a rank that hangs or dies ends the whole job
// (MPI_Abort) with one "kiln: error: distributed: rank R did not answer ..." line on stderr.
// Distributed training may run on any thread, one at a time (MPI_THREAD_SERIALIZED).
#pragma once

#include <cstdint>
#include <string>

namespace kiln::distributed {

struct Options {
  // Target size of one all-reduce: a bucket closes once it holds this many bytes (a larger
  // gradient gets a bucket of its own). PyTorch DDP's default is 25 MiB.
  int64_t bucket_bytes = int64_t{25} << 20;
  // Start each bucket's all-reduce as soon as its gradients are final (true), or all of them
  // after the backward pass (false, for measuring what the overlap buys).
  bool overlap = true;
  // How long any wait on the other ranks may take before the job is ended. The job ends
  // within about 1.5x this after a rank stops answering.
  double timeout_seconds = 60;
};

// True when kiln was built with MPI (find_package(MPI) succeeded).
bool built_with_mpi();

// Joins the job: under mpirun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK in the
// environment) initializes MPI and reads this process's rank and the world size; otherwise,
// or when built without MPI, this is a single process (rank 0 of 1). Installs what
// FitOptions::distributed uses and registers finalize() with atexit. Calling it again only
// replaces the options. Throws ValueError for bucket_bytes < 1 or a timeout_seconds that is not
// finite and > 0 (then nothing changes), kiln::Error when MPI cannot give the thread level
// needed.
void init(const Options& options = {});

bool initialized();
// This process's rank and the number of processes; 0 and 1 before init().
int rank();
int world_size();
const Options& options();

// Waits (with the timeout) until every rank arrives, then shuts MPI down; later training calls
// throw StateError. Idempotent; also run at exit.
void finalize();

// Prints "kiln: error: <message>" on stderr and ends every rank of the job with exit code 1
// (MPI_Abort); in a single process, exits with code 1.
[[noreturn]] void abort_job(const std::string& message);

// Communication time of the steps since init() (or the last reset): for the benchmarks.
struct Stats {
  int64_t steps = 0;
  int64_t buckets = 0;      // all-reduces of gradient buckets
  int64_t bytes = 0;        // gradient bytes reduced (per rank)
  double wait_seconds = 0;  // time spent blocked waiting for buckets after the backward pass
};
Stats stats();
void reset_stats();

}  // namespace kiln::distributed
