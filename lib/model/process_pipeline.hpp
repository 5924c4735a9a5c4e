#pragma once
// ProcessPipelineMistral: pipeline-parallel stages in different MPI processes (`--pp N` under
// `mpirun -np N`). Compiled only when the build found MPI (parallel/mpi_config.hpp defines
// WEFT_HAVE_MPI 1); include this header only then.
//
// Process k of the communicator is stage k and runs a contiguous range of layers (split like
// PipelineParallelMistral: the first stages take the remainder) on its own threads, with the KV
// caches of its layers for every sequence. Stage 0 embeds, the last stage computes logits; the
// hidden states of each micro-batch go from stage k to k + 1 with MpiCommunicator::send/recv, and
// the last stage sends every logits row of a call to process 0 in one message at its end.
//
// The schedule cannot deadlock although a send of a large message returns only once the
// receiver has posted its recv: every stage receives its micro-batches in order, computes and
// sends each on, so a send waits at most for the next stage to finish the micro-batch before;
// process 0 posts its recv of the logits right after sending its last micro-batch, and the last
// stage sends them after computing its last one. Meanwhile stage k computes micro-batch i + 1
// while stage k + 1 computes i.
//
// Collective: construct it, and call prefill() and decode(), on every process of the
// communicator with the same arguments in the same order (only `logits` differs: process 0's
// receives them, the others may pass nullptr). Argument checks run on every process before any
// message is sent, so a bad call throws UsageError everywhere instead of leaving a peer waiting;
// the constructor also compares the shape and options of every process (one all-gather) and
// throws on every process when they differ. Like every MPI call in weft, use it from the thread
// that created the MpiRuntime.
//
// Every process holds a LoadedModel but reads only the weights of its stage (views, no copies):
// with a memory-mapped checkpoint the other layers' pages are never touched.
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/forward.hpp"
#include "model/weights.hpp"
#include "parallel/exec_context.hpp"
#include "parallel/mpi_communicator.hpp"

namespace weft::model {

struct ProcessPipelineOptions {
  int threads = 1;                    // this process's threads (its own ExecContext) when exec is null
  par::ExecContext* exec = nullptr;   // or run on this context (e.g. a Session's); it must outlive the pipeline
  int max_sequences = 1;              // KV caches (sequence ids 0..max_sequences-1)
  int context = 0;                    // positions per sequence (> 0); a rolling window when the model's
                                      // sliding_window is smaller
  int block = 64;                     // prompt rows per prefill micro-batch
  int micro_batches = 4;              // decode micro-batches in flight (consecutive sequences each)
};

// What this process did since construction or reset_stats(), for "communication time per token"
// figures. Every process counts the same tokens; the message counts, bytes and times are its own.
struct ProcessPipelineStats {
  std::int64_t prefill_tokens = 0;  // prompt tokens fed through prefill()
  std::int64_t decode_tokens = 0;   // tokens decoded (one per sequence per decode() call)
  std::int64_t decode_calls = 0;
  std::uint64_t messages = 0;       // sends and receives this process made
  std::uint64_t bytes_sent = 0;
  // Wall time inside those sends and receives. It includes waiting for the peer: on a stage after
  // the first, waiting for the stage before to finish its micro-batch; on process 0, the drain of
  // the pipeline before the logits arrive. So it is the time a stage did not compute, not the wire
  // time alone (that is about bytes_sent / bandwidth + one latency per message).
  std::chrono::nanoseconds comm_time{0};
  std::chrono::nanoseconds compute_time{0};  // inside the forward pass of this stage's layers
};

class ProcessPipelineMistral {
 public:
  // Stage comm.rank() of comm.world_size() stages. Throws UsageError (on every process) when
  // there are more stages than layers, an option is out of range, or the processes were
  // constructed with different models or options. m and comm (and options.exec) must outlive this
  // object.
  ProcessPipelineMistral(const LoadedModel& m, par::MpiCommunicator& comm, const ProcessPipelineOptions& options);
  ~ProcessPipelineMistral();
  ProcessPipelineMistral(const ProcessPipelineMistral&) = delete;
  ProcessPipelineMistral& operator=(const ProcessPipelineMistral&) = delete;

  int stages() const noexcept { return stages_; }
  int stage() const noexcept { return stage_; }
  // The first layer of stage k, and one past its last (any stage, not only this process's).
  int layer_begin(int k) const noexcept;
  int layer_end(int k) const noexcept;
  int micro_batches() const noexcept { return options_.micro_batches; }
  int max_sequences() const noexcept { return options_.max_sequences; }
  int block() const noexcept { return options_.block; }
  int vocab_size() const noexcept { return model_.config.vocab_size; }
  // The capacity of every sequence's KV cache (positions), and whether it is a rolling window.
  int cache_capacity() const noexcept;
  bool cache_rolling() const noexcept;

  // Feeds tokens to sequence seq at positions pos0, pos0 + 1, ... in blocks of block() rows,
  // which flow through the stages as micro-batches, and writes the logits after the last token
  // (vocab_size() floats) to logits on process 0. Throws UsageError for an empty prompt, a
  // sequence id or token id out of range, a negative position, no room in the cache, or a null
  // logits on process 0.
  void prefill(int seq, std::int64_t pos0, std::span<const std::int32_t> tokens, float* logits);
  // One token for each sequence seqs[i] (distinct, at most max_sequences()) at position
  // positions[i], split into up to micro_batches() micro-batches of consecutive sequences (one
  // batch when there is only one stage: nothing would overlap); writes logits row i (vocab_size()
  // floats each) for seqs[i] on process 0. Nothing to do for no sequences. Throws UsageError like
  // prefill(), and for spans of different lengths or a sequence given twice. Allocates nothing.
  void decode(std::span<const int> seqs, std::span<const std::int64_t> positions, std::span<const std::int32_t> tokens,
              float* logits);

  const ProcessPipelineStats& stats() const noexcept { return stats_; }
  void reset_stats() noexcept { stats_ = {}; }

  // Message tags on comm's point-to-point channel; other traffic on the same communicator must
  // not use them.
  static constexpr int kHiddenTag = 32000;
  static constexpr int kLogitsTag = 32001;

 private:
  void check_sequence(int seq, std::int64_t pos, std::int64_t n, const char* what) const;
  void check_tokens(std::span<const std::int32_t> tokens) const;
  void check_logits(const float* logits, const char* what) const;
  // Runs this stage's layers over runs_ (rows [0, n)), receiving the hidden states from the stage
  // before and sending them to the stage after; head: compute logits (last stage only).
  void step(const std::int32_t* tokens, int n, bool head);
  void send(const float* data, std::size_t n, int dest, int tag);
  void recv(float* data, std::size_t n, int source, int tag);

  const LoadedModel& model_;
  par::MpiCommunicator& comm_;
  ProcessPipelineOptions options_;
  int stages_ = 1;
  int stage_ = 0;
  std::unique_ptr<par::ExecContext> own_exec_;  // when options.exec is null
  par::ExecContext* exec_ = nullptr;
  MistralConfig config_;     // n_layers = this stage's layer count
  MistralWeights weights_;   // this stage's layers; embedding on stage 0, final norm and lm_head on the last
  std::vector<KVCache> caches_;  // [sequence], this stage's layers
  ForwardState state_;           // blocks of up to max(block, max_sequences) rows
  // Reserved at construction, so that decode() allocates nothing.
  std::vector<SequenceRun> runs_;
  std::vector<float> step_logits_;          // last stage of several: the logits rows of one call
  std::vector<unsigned char> seen_;         // decode: which sequences this call names
  ProcessPipelineStats stats_;
};

}  // namespace weft::model
