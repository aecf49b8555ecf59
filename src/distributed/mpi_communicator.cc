// Communicator over MPI. Every wait polls with a deadline instead of blocking in MPI, because
// a collective with a dead or stuck rank never returns. On a timeout the waiting ranks find
// out who is missing with a round of "alive" messages on a communicator of their own: each
// posts one to every peer and listens for a grace period; a rank that sends nothing is named.
// Ranks answer such a message from any wait, so the healthy ones agree quickly, and the
// lowest healthy rank ends the job (MPI_Abort) with the message.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "kiln/error.h"

namespace kiln::distributed::detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kAliveTag = 7;
// Largest element count of one MPI call (counts are ints).
constexpr int64_t kMaxCount = int64_t{1} << 30;

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(double timeout, bool own_mpi) : timeout_(timeout), own_mpi_(own_mpi) {
    MPI_Comm_dup(MPI_COMM_WORLD, &data_);
    MPI_Comm_dup(MPI_COMM_WORLD, &alive_);
    // Errors (e.g. a peer that died) come back as codes, so the watchdog names the rank.
    MPI_Comm_set_errhandler(data_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(alive_, MPI_ERRORS_RETURN);
    // OpenMPI reports some failed non-blocking collectives on MPI_COMM_WORLD.
    if (own_mpi_) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(data_, &rank_);
    MPI_Comm_size(data_, &size_);
    post_alive_recv();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void set_timeout(double seconds) override { timeout_ = seconds; }

  void start_allreduce(void* data, int64_t count, DType dtype) override {
    MPI_Datatype t = dtype == DType::kFloat64 ? MPI_DOUBLE : MPI_FLOAT;
    const int64_t item = dtype == DType::kFloat64 ? 8 : 4;
    char* p = static_cast<char*>(data);
    for (int64_t done = 0; done < count; done += kMaxCount) {
      const int n = static_cast<int>(std::min(kMaxCount, count - done));
      pending_.emplace_back();
      MPI_Iallreduce(MPI_IN_PLACE, p + done * item, n, t, MPI_SUM, data_, &pending_.back());
    }
  }

  void start_broadcast(void* data, int64_t bytes, int root) override {
    char* p = static_cast<char*>(data);
    for (int64_t done = 0; done < bytes; done += kMaxCount) {
      const int n = static_cast<int>(std::min(kMaxCount, bytes - done));
      pending_.emplace_back();
      MPI_Ibcast(p + done, n, MPI_BYTE, root, data_, &pending_.back());
    }
  }

  void progress() override {
    int done = 0;
    if (!pending_.empty()) {
      MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE);
    }
  }

  void wait_all(const std::string& what) override {
    const Clock::time_point deadline = Clock::now() + to_duration(timeout_);
    for (int64_t polls = 0;; ++polls) {
      int done = 1, rc = MPI_SUCCESS;
      if (!pending_.empty()) {
        rc = MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done,
                         MPI_STATUSES_IGNORE);
      }
      if (rc == MPI_SUCCESS && done) {
        pending_.clear();
        return;
      }
      int from = poll_alive();
      if (rc != MPI_SUCCESS || from >= 0 || Clock::now() > deadline) {
        find_missing_and_abort(what, from, rc);
      }
      // Spin briefly (a bucket often lands within microseconds), then let other work run.
      if (polls > 2000) usleep(20);
    }
  }

  void shut_down() override {
    pending_.emplace_back();
    MPI_Ibarrier(data_, &pending_.back());
    wait_all("the other ranks to finish");
    MPI_Cancel(&alive_recv_);
    MPI_Wait(&alive_recv_, MPI_STATUS_IGNORE);
    MPI_Comm_free(&alive_);
    MPI_Comm_free(&data_);
    if (own_mpi_) MPI_Finalize();
  }

  [[noreturn]] void abort(const std::string& message) override {
    std::fprintf(stderr, "kiln: error: %s\n", message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    _exit(1);  // MPI_Abort does not return; this keeps [[noreturn]] honest
  }

 private:
  static Clock::duration to_duration(double s) {
    s = std::min(s, 1e9);  // ~30 years: longer would overflow the clock's nanoseconds
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  void post_alive_recv() {
    MPI_Irecv(&alive_in_, 1, MPI_INT, MPI_ANY_SOURCE, kAliveTag, alive_, &alive_recv_);
  }

  // The rank an "alive" message came from (the receive is posted again), or -1.
  int poll_alive() {
    int flag = 0;
    MPI_Status st;
    MPI_Test(&alive_recv_, &flag, &st);
    if (!flag) return -1;
    post_alive_recv();
    return st.MPI_SOURCE;
  }

  // A wait timed out or failed here (MPI error code `rc`), or rank `from` says its wait did:
  // tell every peer this rank is alive, listen for a grace period, name the silent ranks.
  [[noreturn]] void find_missing_and_abort(const std::string& what, int from, int rc) {
    std::vector<char> heard(size_, 0);
    heard[rank_] = 1;
    if (from >= 0) heard[from] = 1;
    std::vector<MPI_Request> sends;
    for (int p = 0; p < size_; ++p) {
      if (p == rank_) continue;
      sends.emplace_back();
      MPI_Isend(&rank_, 1, MPI_INT, p, kAliveTag, alive_, &sends.back());
    }
    const double grace = std::max(1.0, timeout_ / 2);
    const Clock::time_point until = Clock::now() + to_duration(grace);
    while (std::count(heard.begin(), heard.end(), 1) < size_ && Clock::now() < until) {
      int p = poll_alive();
      if (p >= 0) {
        heard[p] = 1;
      } else {
        usleep(200);
      }
    }
    std::string missing;
    int silent = 0;
    for (int p = 0; p < size_; ++p) {
      if (heard[p]) continue;
      missing += (missing.empty() ? "" : ", ") + std::to_string(p);
      ++silent;
    }
    std::string failed;  // "failed (MPI_ERR_TRUNCATE: message truncated)" on an MPI error
    if (rc != MPI_SUCCESS) {
      char text[MPI_MAX_ERROR_STRING];
      int len = 0;
      MPI_Error_string(rc, text, &len);
      failed = "failed (" + std::string(text, len) + ")";
    }
    std::string message;
    if (silent > 0) {
      message = "distributed: rank" + std::string(silent > 1 ? "s " : " ") + missing +
                " did not answer within " + seconds_text(timeout_) + " (rank " +
                std::to_string(rank_) + " was waiting for " + what +
                (failed.empty() ? "" : ", which " + failed) + "); ending the job";
    } else {
      message = "distributed: all " + std::to_string(size_) + " ranks are alive but " + what +
                (failed.empty() ? " did not complete within " + seconds_text(timeout_) +
                                      " (a rank slower than the timeout, or ranks running "
                                      "different steps)"
                                : " " + failed + " (ranks running different steps?)") +
                "; ending the job";
    }
    // The lowest healthy rank reports; the others give it time to end the job first.
    int lowest = static_cast<int>(std::find(heard.begin(), heard.end(), 1) - heard.begin());
    if (lowest != rank_) usleep(static_cast<useconds_t>(1e6 * std::min(grace, 10.0)));
    abort(message);
  }

  double timeout_;
  bool own_mpi_;
  MPI_Comm data_ = MPI_COMM_NULL, alive_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> pending_;
  MPI_Request alive_recv_ = MPI_REQUEST_NULL;
  int alive_in_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(double timeout_seconds) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  if (initialized) {
    MPI_Query_thread(&provided);
  } else {
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    if (!initialized) MPI_Finalize();
    throw Error("distributed: MPI provides thread level " + std::to_string(provided) +
                "; kiln needs MPI_THREAD_SERIALIZED (" + std::to_string(MPI_THREAD_SERIALIZED) +
                "): training may run on a thread other than the one that called init()");
  }
  return std::make_unique<MpiCommunicator>(timeout_seconds, !initialized);
}

}  // namespace kiln::distributed::detail
