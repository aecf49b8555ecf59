// The collective operations data-parallel training needs, behind one small interface: over MPI
// (mpi_communicator.cc, when kiln is built with MPI and launched by mpirun) or for a single
// process, where every operation is the identity.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kiln/dtype.h"

namespace kiln::distributed::detail {

// Collective: every rank makes the same start_* calls in the same order. Used by the thread
// that called init() only.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Starts an in-place sum over ranks of `count` elements (float32 or float64) at `data`, which
  // must stay alive and untouched until wait_all() returns.
  virtual void start_allreduce(void* data, int64_t count, DType dtype) = 0;
  // Starts copying `bytes` bytes at `data` from rank `root` to every rank; same rules.
  virtual void start_broadcast(void* data, int64_t bytes, int root) = 0;
  // Lets started operations advance: MPI moves non-blocking collectives only inside MPI calls.
  virtual void progress() = 0;
  // Waits for every started operation. When they do not complete within the timeout, ends the
  // job on every rank with one message naming the ranks that did not answer and `what` was
  // awaited (e.g. "the gradients of step 12"); it then never returns.
  virtual void wait_all(const std::string& what) = 0;

  virtual void set_timeout(double seconds) = 0;

  // Waits (with the timeout) until every rank calls it, then releases MPI; nothing may be
  // called after it.
  virtual void shut_down() = 0;

  // Prints "kiln: error: <message>" on stderr and ends the job with exit code 1.
  [[noreturn]] virtual void abort(const std::string& message) = 0;
};

// True when the environment says mpirun (or another MPI launcher) started this process.
bool launched_by_mpi();

// A communicator over MPI_COMM_WORLD (mpi_communicator.cc; only in builds with MPI).
// Initializes MPI with MPI_THREAD_SERIALIZED unless it already is; throws kiln::Error when MPI
// provides a lower thread level.
std::unique_ptr<Communicator> make_mpi_communicator(double timeout_seconds);

// The single-process communicator: rank 0 of 1.
std::unique_ptr<Communicator> make_solo_communicator();

// The communicator of kiln::distributed::init(); null before it and after finalize().
Communicator* current_communicator();

}  // namespace kiln::distributed::detail
