#pragma once
// The messages between rank 0's sessions and the serving processes of an MPI job. Rank 0 posts
// one command per event over an MpiCommandChannel: Open (a session over the processes starts:
// its kind, sizes and the model's shape, checked by the servers), Decode (one forward step: its
// runs or sequences, positions and token ids), Close (the session ends) and Stop (serve() returns).
// The servers rebuild the same tensor-parallel model and run every step with the same arguments,
// so the collectives inside match.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "model/tensor_parallel_model.hpp"
#include "parallel/mpi_config.hpp"
#include "weft/processes.hpp"
#if WEFT_HAVE_MPI
#include "parallel/mpi_command_channel.hpp"
#include "parallel/mpi_communicator.hpp"
#endif

namespace weft {

namespace model {

// Open's payload: what the servers need to build the same session.
struct OpenSession {
  std::uint32_t magic = 0x6f70656e;  // "open"
  std::int32_t mode = 1;             // 1: tensor parallel, 2: pipeline (one stage per process)
  std::int32_t ranks = 1;            // tensor-parallel ranks over all processes, or pipeline stages
  std::int32_t micro_batches = 1;
  std::int32_t sequences = 1, context = 1, block = 1;
  // The model's shape, which every process must share.
  std::int32_t dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, hidden_dim = 0, vocab_size = 0;
};

// A Decode step's payload starts with this header.
struct StepHeader {
  enum Op : std::int32_t { kTensorParallel = 1, kPipelinePrefill = 2, kPipelineDecode = 3 };
  std::int32_t op = kTensorParallel;
  std::int32_t items = 0;       // runs (tensor parallel) or sequences (pipeline decode)
  std::int32_t n = 0;           // token ids
  std::int32_t all_logits = 0;  // tensor parallel: logits after every token
  std::int64_t pos0 = 0;        // pipeline prefill: first position
  std::int32_t seq = 0;         // pipeline prefill: the sequence
  std::int32_t pad = 0;
};

}  // namespace model

struct Processes::Impl {
  int rank = 0;
  int size = 1;
#if WEFT_HAVE_MPI
  std::optional<par::MpiRuntime> runtime;
  std::unique_ptr<par::MpiCommunicator> comm;
  std::unique_ptr<par::MpiCommandChannel> channel;
#endif
  bool session_open = false;      // rank 0: an Open was posted and not yet closed
  bool leading = false;           // rank 0: the others serve, so ~Processes posts Stop
  bool served = false;            // not rank 0: serve() was called
  std::vector<std::byte> message;  // rank 0: the payload being built (reused)

  // The communicator across the processes (TensorParallelOptions::processes); null for one process.
  par::Communicator* communicator() noexcept;

  // Rank 0: a session over the processes starts / ends. open() throws UsageError when another
  // session over the same processes is open (one at a time); close() is a no-op without one.
  void open(const model::OpenSession& o);
  void close() noexcept;
  // Rank 0: the step every server runs next, before rank 0 runs it itself.
  void post_forward(std::span<const model::TensorParallelMistral::Run> runs, const std::int32_t* tokens, int n,
                    bool all_logits);
  // Rank 0, pipeline stages in processes: the prefill or decode step every stage runs next.
  void post_prefill(int seq, std::int64_t pos0, std::span<const std::int32_t> tokens);
  void post_decode(std::span<const int> seqs, std::span<const std::int64_t> positions,
                   std::span<const std::int32_t> tokens);
};

}  // namespace weft
