#pragma once
// Orchestration across processes: the driver process (root, rank 0) broadcasts each step — a
// StepCommand and its payload, e.g. the token ids — and every other process loops receiving and
// running the same step until Stop. It is RankGroup::dispatch one level up: the handler a process
// runs for a command is typically its in-process RankGroup's dispatch of the same command, whose
// rank 0 meets the other processes at the MpiCommunicator.
//
//   root:     channel.dispatch(cmd, payload_bytes, [&](const StepCommand& c) { step(c); });
//   workers:  channel.serve([&](const StepCommand& c) { step(c); });  // returns after Stop
//
// One broadcast per command: payloads up to kInlinePayload bytes (a decode step's token, a short
// prompt) travel inside the command; longer ones follow in a second broadcast. A worker waiting
// for its next command sleeps (backoff up to 20 ms) and by default waits forever, since the root
// may legitimately sit idle (a chat waiting for its user); if the root dies, mpirun ends the job.
// The step itself runs under the communicator's timeout.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "parallel/mpi_communicator.hpp"
#include "parallel/rank_group.hpp"

namespace weft::par {

class MpiCommandChannel {
 public:
  // Payload bytes that travel inside the command's own broadcast.
  static constexpr std::size_t kInlinePayload = 208;

  // A channel over `comm` (which must outlive it) driven by rank `root`. Not collective.
  explicit MpiCommandChannel(MpiCommunicator& comm, int root = 0);

  // True on the driving rank.
  bool is_root() const noexcept { return comm_.rank() == root_; }

  // Root only: broadcasts cmd and payload_bytes bytes at cmd.data (null when payload_bytes is 0),
  // then runs handler(cmd) on this process, the way the workers run it. Throws UsageError on a
  // worker or for a negative position or count; throws MpiError if MPI fails.
  template <class F>
  void dispatch(const StepCommand& cmd, std::size_t payload_bytes, F&& handler) {
    post(cmd, payload_bytes);
    handler(cmd);
  }

  // Root only: the broadcast half of dispatch().
  void post(const StepCommand& cmd, std::size_t payload_bytes);

  // Workers only: waits for the root's next command and returns it. Its data points at the
  // payload (payload()), owned by the channel and valid until the next receive(); data is null
  // when there is no payload. Throws MpiError if the stream is corrupt or out of step.
  StepCommand receive();

  // The payload of the last received command.
  std::span<const std::byte> payload() const noexcept { return {payload_.data(), payload_size_}; }

  // Workers only: receives commands and runs handler(cmd) for each, Stop included, and returns
  // the number of commands run once it has run Stop.
  template <class F>
  std::uint64_t serve(F&& handler) {
    std::uint64_t n = 0;
    for (;;) {
      const StepCommand cmd = receive();
      handler(static_cast<const StepCommand&>(cmd));
      ++n;
      if (cmd.kind == Command::Stop) return n;
    }
  }

  // How long a worker waits for its next command before ending the job as timed out; zero (the
  // default) waits forever.
  void set_idle_timeout(std::chrono::milliseconds timeout) noexcept { idle_timeout_ = timeout; }

  // Commands posted (root) or received (workers) so far.
  std::uint64_t commands() const noexcept { return seq_; }

 private:
  MpiCommunicator& comm_;
  int root_;
  std::uint64_t seq_ = 0;
  std::chrono::milliseconds idle_timeout_{0};
  std::vector<std::byte> payload_;
  std::size_t payload_size_ = 0;
};

}  // namespace weft::par
