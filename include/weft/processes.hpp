#pragma once
// The processes of an MPI job: tensor- and pipeline-parallel ranks across processes and hosts
// (docs/mpi.md). Every process of the job creates one Processes first thing in main(), loads the
// same model (or a `weft shard` directory, so each process reads only its own shard files) and
// makes a Context. Rank 0 then works as usual with sessions whose options name the processes;
// every other process calls serve(), which runs the same steps as rank 0's sessions until rank
// 0's Processes ends. Only rank 0 sees prompts, tokens and logits.
//
//   int main(int argc, char** argv) {
//     weft::Processes procs(&argc, &argv);           // joins the job when started by mpirun
//     auto model = weft::Model::load("model-dir");
//     weft::Context ctx(2);
//     if (!procs.is_root()) { procs.serve(model, ctx); return 0; }
//     weft::Session s(model, ctx, {.tp = 2 * procs.size(), .processes = &procs});  // 2 ranks per process
//     ...                                             // prefill/decode as with one process
//   }
#include <cstdint>
#include <memory>
#include <string>

namespace weft {

class Model;
class Context;

class Processes {
 public:
  // Joins the MPI job this process was started in by mpirun or mpiexec (MPI_Init), or forms a
  // world of one process when it was not. argc/argv may be null. Throws UsageError when the
  // process was started by mpirun but weft was built without MPI.
  Processes(int* argc, char*** argv);
  // On rank 0: tells the serving processes to return from serve(). Then leaves MPI
  // (MPI_Finalize, which waits for the other processes).
  ~Processes();
  Processes(const Processes&) = delete;
  Processes& operator=(const Processes&) = delete;

  // This process's rank (0..size()-1), the number of processes, and whether this is rank 0.
  int rank() const noexcept;
  int size() const noexcept;
  bool is_root() const noexcept { return rank() == 0; }

  // Whether this weft was built with MPI, and whether this process was started by mpirun.
  static bool built_with_mpi() noexcept;
  static bool launched_by_mpirun() noexcept;

  // Not rank 0: runs the sessions rank 0 opens over the processes, each step as rank 0 runs it,
  // until rank 0's Processes ends (returns then). `model` must be the model rank 0 loaded (its
  // shape is checked when a session opens: InputError otherwise). Throws UsageError on rank 0.
  void serve(std::shared_ptr<const Model> model, Context& context);
  // Whether serve() has been called on this process. Once it has, rank 0 may be waiting for this
  // process inside a step, so a failure here must end the whole job (abort()); before, a failure
  // is this process's alone (every process checks the same arguments and loads the same files).
  bool started_serving() const noexcept;

  // Rank 0: the other processes are in serve(), or on their way there, so ~Processes must tell
  // them to return. Opening a session over the processes does this too; a rank 0 that fails
  // before its first session calls it so that the others do not wait for it.
  void lead() noexcept;

  // How long serve() waits for rank 0's next command before ending the job as timed out; 0 (the
  // default) waits forever, as an interactive rank 0 may wait for its user. Seconds >= 0.
  void set_idle_timeout(double seconds);
  // The longest one collective (an all-reduce, a broadcast) may wait for the other processes
  // before the job ends with a message naming the silent rank: WEFT_MPI_TIMEOUT, default 60 s.
  double timeout_seconds() const noexcept;

  // Prints "weft: rank R: message" to stderr and ends every process of the job with exit status
  // `code` (MPI_Abort): for a failure on one process that the others would otherwise wait for.
  [[noreturn]] void abort(int code, const std::string& message) noexcept;

  // Counters of this process's messages to the others since the last reset: operations
  // (collectives, command broadcasts), payload bytes sent and wall time inside them.
  struct Stats {
    std::uint64_t operations = 0;
    std::uint64_t bytes_sent = 0;
    double seconds = 0;
  };
  Stats stats() const noexcept;
  void reset_stats() noexcept;

  struct Impl;
  Impl& impl() noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft
