// kiln::distributed: the process's place in the job, and the factory fit() uses.
#include "kiln/distributed.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "distributed/communicator.h"
#include "distributed/data_parallel.h"
#include "kiln/error.h"
#include "nn/gradient_sync.h"

namespace kiln::distributed {
namespace {

using detail::Communicator;

class Solo : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void start_allreduce(void*, int64_t, DType) override {}
  void start_broadcast(void*, int64_t, int) override {}
  void progress() override {}
  void wait_all(const std::string&) override {}
  void set_timeout(double) override {}
  void shut_down() override {}
  [[noreturn]] void abort(const std::string& message) override {
    std::fprintf(stderr, "kiln: error: %s\n", message.c_str());
    std::fflush(stderr);
    std::exit(1);
  }
};

struct Global {
  std::mutex mu;
  std::unique_ptr<Communicator> comm;
  Options options;
  Stats stats;
  bool initialized = false;
  bool finalized = false;
  bool atexit_registered = false;
};

Global& global() {
  static Global* g = new Global;  // never destroyed: finalize() runs at exit
  return *g;
}

std::unique_ptr<kiln::detail::GradientSync> make_sync() {
  Global& g = global();
  if (!g.comm) {
    throw StateError("fit: FitOptions::distributed after kiln::distributed::finalize()");
  }
  return detail::make_data_parallel(*g.comm, g.options, g.stats);
}

std::unique_ptr<Communicator> make_communicator(const Options& o) {
  if (!detail::launched_by_mpi()) return detail::make_solo_communicator();
#ifdef KILN_HAVE_MPI
  return detail::make_mpi_communicator(o.timeout_seconds);
#else
  const char* n = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (!n) n = std::getenv("PMI_SIZE");
  if (n && std::string(n) != "1") {
    throw Error("distributed: launched by an MPI launcher with " + std::string(n) +
                " processes, but kiln was built without MPI (install libopenmpi-dev and "
                "configure again)");
  }
  return detail::make_solo_communicator();
#endif
}

void finalize_at_exit() { finalize(); }

}  // namespace

namespace detail {

bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

std::unique_ptr<Communicator> make_solo_communicator() { return std::make_unique<Solo>(); }

Communicator* current_communicator() {
  Global& g = global();
  std::lock_guard<std::mutex> lock(g.mu);
  return g.comm.get();
}

}  // namespace detail

bool built_with_mpi() {
#ifdef KILN_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void init(const Options& options) {
  if (options.bucket_bytes < 1) {
    throw ValueError("distributed::init: bucket_bytes must be >= 1, got " +
                     std::to_string(options.bucket_bytes));
  }
  if (!(options.timeout_seconds > 0) || !std::isfinite(options.timeout_seconds)) {
    throw ValueError("distributed::init: timeout_seconds must be finite and > 0, got " +
                     std::to_string(options.timeout_seconds));
  }
  Global& g = global();
  std::lock_guard<std::mutex> lock(g.mu);
  if (g.finalized) throw StateError("distributed::init: called after finalize()");
  if (!g.initialized) {
    g.comm = make_communicator(options);
    g.initialized = true;
    kiln::detail::set_gradient_sync_factory(&make_sync);
    if (!g.atexit_registered) std::atexit(finalize_at_exit);
    g.atexit_registered = true;
  }
  g.options = options;
  g.comm->set_timeout(options.timeout_seconds);
}

bool initialized() {
  Global& g = global();
  std::lock_guard<std::mutex> lock(g.mu);
  return g.initialized && !g.finalized;
}

int rank() {
  Global& g = global();
  std::lock_guard<std::mutex> lock(g.mu);
  return g.comm ? g.comm->rank() : 0;
}

int world_size() {
  Global& g = global();
  std::lock_guard<std::mutex> lock(g.mu);
  return g.comm ? g.comm->size() : 1;
}

const Options& options() { return global().options; }

void finalize() {
  Global& g = global();
  std::unique_ptr<Communicator> comm;
  {
    std::lock_guard<std::mutex> lock(g.mu);
    if (!g.initialized || g.finalized) return;
    g.finalized = true;
    comm = std::move(g.comm);
  }
  comm->shut_down();
}

void abort_job(const std::string& message) {
  Global& g = global();
  if (g.comm) g.comm->abort(message);
  detail::make_solo_communicator()->abort(message);
}

Stats stats() { return global().stats; }
void reset_stats() { global().stats = Stats{}; }

}  // namespace kiln::distributed
