#include "model/process_pipeline.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <string>

#include "weft/error.hpp"

namespace weft::model {

namespace {

using Clock = std::chrono::steady_clock;

// The first layer of stage k of `stages` over n layers: contiguous ranges as even as possible,
// the first n % stages ranges one layer longer (as PipelineParallelMistral splits).
int first_layer(int n, int stages, int k) noexcept { return k * (n / stages) + std::min(k, n % stages); }

}  // namespace

ProcessPipelineMistral::ProcessPipelineMistral(const LoadedModel& m, par::MpiCommunicator& comm,
                                               const ProcessPipelineOptions& options)
    : model_(m), comm_(comm), options_(options), stages_(comm.world_size()), stage_(comm.rank()) {
  const MistralConfig& c = m.config;
  // This process's own complaint about its options, if any (threads may differ between processes).
  std::string local_error;
  const auto at_least_one = [&](int v, const char* name) {
    if (v < 1 && local_error.empty())
      local_error = std::string("process pipeline: ") + name + " must be at least 1, got " + std::to_string(v);
  };
  if (options_.exec == nullptr) at_least_one(options_.threads, "threads");
  at_least_one(options_.max_sequences, "max_sequences");
  at_least_one(options_.context, "context");
  at_least_one(options_.block, "block");
  at_least_one(options_.micro_batches, "micro_batches");

  // Every check below throws on every process alike, before any stage waits for another: a process
  // that threw alone would leave the others waiting in their first message until the timeout. A
  // process started with another checkpoint or other options would exchange messages of other
  // sizes, or wait for micro-batches that never come; so the shapes, options and each process's
  // verdict on its own options are compared first (the values are small integers, exact in a float).
  const char* names[] = {"n_layers", "dim", "hidden_dim", "n_heads", "n_kv_heads", "vocab_size", "sliding_window",
                         "max_sequences", "context", "block", "micro_batches"};
  const float mine[] = {static_cast<float>(c.n_layers),       static_cast<float>(c.dim),
                        static_cast<float>(c.hidden_dim),     static_cast<float>(c.n_heads),
                        static_cast<float>(c.n_kv_heads),     static_cast<float>(c.vocab_size),
                        static_cast<float>(c.sliding_window), static_cast<float>(options_.max_sequences),
                        static_cast<float>(options_.context), static_cast<float>(options_.block),
                        static_cast<float>(options_.micro_batches), local_error.empty() ? 0.0f : 1.0f};
  constexpr std::size_t kFields = std::size(mine), kCompared = std::size(names);
  std::vector<float> all(kFields * static_cast<std::size_t>(stages_));
  comm_.all_gather(mine, kFields, all.data());
  const auto at = [&](int p, std::size_t f) { return all[static_cast<std::size_t>(p) * kFields + f]; };
  for (int p = 1; p < stages_; ++p)
    for (std::size_t f = 0; f < kCompared; ++f)
      if (at(p, f) != at(0, f))
        throw UsageError("process pipeline: the processes were constructed with different models or options: " +
                         std::string(names[f]) + " is " + std::to_string(static_cast<long long>(at(0, f))) +
                         " on process 0 but " + std::to_string(static_cast<long long>(at(p, f))) + " on process " +
                         std::to_string(p));
  if (stages_ > c.n_layers)
    throw UsageError("pipeline: " + std::to_string(stages_) + " stages (MPI processes) but the model has only " +
                     std::to_string(c.n_layers) + " layers (a stage holds at least one layer)");
  if (!local_error.empty()) throw UsageError(local_error);
  for (int p = 0; p < stages_; ++p)
    if (at(p, kCompared) != 0.0f)
      throw UsageError("process pipeline: process " + std::to_string(p) + " refused its options (see its message)");

  if (options_.exec != nullptr) {
    exec_ = options_.exec;
  } else {
    own_exec_ = std::make_unique<par::ExecContext>(options_.threads);
    exec_ = own_exec_.get();
  }
  const int begin = layer_begin(stage_), end = layer_end(stage_);
  config_ = c;
  config_.n_layers = end - begin;
  weights_.layers.assign(m.weights.layers.begin() + begin, m.weights.layers.begin() + end);
  // Only the stages that use them keep views of the embedding and the head, so that nothing here
  // points at weights a process that loads only its part would not have.
  if (stage_ == 0) weights_.embedding = m.weights.embedding;
  if (stage_ == stages_ - 1) {
    weights_.final_norm = m.weights.final_norm;
    weights_.lm_head = m.weights.lm_head;
  }
  caches_.reserve(static_cast<std::size_t>(options_.max_sequences));
  for (int i = 0; i < options_.max_sequences; ++i) caches_.emplace_back(config_, options_.context);
  // A decode step puts up to max_sequences rows in one micro-batch (micro_batches 1).
  const int rows = std::max(options_.block, options_.max_sequences);
  state_ = ForwardState(config_, rows, caches_.front().capacity, exec_->threads());
  runs_.reserve(static_cast<std::size_t>(rows));
  if (stages_ > 1 && stage_ == stages_ - 1)
    step_logits_.resize(static_cast<std::size_t>(options_.max_sequences) * static_cast<std::size_t>(c.vocab_size));
  seen_.assign(static_cast<std::size_t>(options_.max_sequences), 0);
}

ProcessPipelineMistral::~ProcessPipelineMistral() = default;

int ProcessPipelineMistral::layer_begin(int k) const noexcept {
  return first_layer(model_.config.n_layers, stages_, k);
}
int ProcessPipelineMistral::layer_end(int k) const noexcept {
  return first_layer(model_.config.n_layers, stages_, k + 1);
}
int ProcessPipelineMistral::cache_capacity() const noexcept { return caches_.front().capacity; }
bool ProcessPipelineMistral::cache_rolling() const noexcept { return caches_.front().rolling; }

void ProcessPipelineMistral::check_sequence(int seq, std::int64_t pos, std::int64_t n, const char* what) const {
  if (seq < 0 || seq >= options_.max_sequences)
    throw UsageError(std::string("process pipeline ") + what + ": sequence " + std::to_string(seq) +
                     " is outside [0, " + std::to_string(options_.max_sequences) + ")");
  if (pos < 0)
    throw UsageError(std::string("process pipeline ") + what + ": position " + std::to_string(pos) + " of sequence " +
                     std::to_string(seq) + " is negative");
  if (!cache_rolling() && pos + n > cache_capacity())
    throw UsageError(std::string("process pipeline ") + what + ": context full: " + std::to_string(pos) + " + " +
                     std::to_string(n) + " tokens of sequence " + std::to_string(seq) + " exceed the context of " +
                     std::to_string(cache_capacity()) + " positions");
}

void ProcessPipelineMistral::check_tokens(std::span<const std::int32_t> tokens) const {
  for (std::int32_t id : tokens)
    if (id < 0 || id >= model_.config.vocab_size)
      throw UsageError("process pipeline: token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                       std::to_string(model_.config.vocab_size) + ")");
}

void ProcessPipelineMistral::check_logits(const float* logits, const char* what) const {
  // Only process 0 can fail this; the others then wait for it until the communicator's timeout
  // ends the job, with a message naming the operation.
  if (stage_ == 0 && logits == nullptr)
    throw UsageError(std::string("process pipeline ") + what + ": process 0 must pass a logits buffer");
}

void ProcessPipelineMistral::send(const float* data, std::size_t n, int dest, int tag) {
  const par::MpiCommStats before = comm_.stats();
  comm_.send(data, n, dest, tag);
  const par::MpiCommStats& after = comm_.stats();
  stats_.messages += after.operations - before.operations;
  stats_.bytes_sent += after.bytes_sent - before.bytes_sent;
  stats_.comm_time += after.time - before.time;
}

void ProcessPipelineMistral::recv(float* data, std::size_t n, int source, int tag) {
  const par::MpiCommStats before = comm_.stats();
  comm_.recv(data, n, source, tag);
  const par::MpiCommStats& after = comm_.stats();
  stats_.messages += after.operations - before.operations;
  stats_.comm_time += after.time - before.time;
}

void ProcessPipelineMistral::step(const std::int32_t* tokens, int n, bool head) {
  const std::size_t floats = static_cast<std::size_t>(n) * static_cast<std::size_t>(config_.dim);
  if (stage_ > 0) recv(state_.x.data(), floats, stage_ - 1, kHiddenTag);
  const auto start = Clock::now();
  const ForwardOptions opt{.embed = stage_ == 0, .head = head};
  forward_runs(config_, weights_, *exec_, runs_, state_, tokens, n, false, opt);
  stats_.compute_time += Clock::now() - start;
  // send returns once state_.x may be overwritten by the next micro-batch.
  if (stage_ < stages_ - 1) send(state_.x.data(), floats, stage_ + 1, kHiddenTag);
}

void ProcessPipelineMistral::prefill(int seq, std::int64_t pos0, std::span<const std::int32_t> tokens, float* logits) {
  if (tokens.empty()) throw UsageError("process pipeline prefill: no tokens");
  check_sequence(seq, pos0, static_cast<std::int64_t>(tokens.size()), "prefill");
  check_tokens(tokens);
  check_logits(logits, "prefill");
  const bool last = stage_ == stages_ - 1;
  const std::size_t n = tokens.size(), block = static_cast<std::size_t>(options_.block);
  KVCache& cache = caches_[static_cast<std::size_t>(seq)];
  for (std::size_t b = 0; b < n; b += block) {
    const int rows = static_cast<int>(std::min(block, n - b));
    runs_.clear();
    runs_.push_back({.cache = &cache, .first_row = 0, .n_rows = rows, .pos0 = pos0 + static_cast<std::int64_t>(b)});
    // Only the last block's logits are wanted: the head runs once per prompt.
    step(tokens.data() + b, rows, last && b + block >= n);
  }
  const std::size_t vocab = static_cast<std::size_t>(model_.config.vocab_size);
  if (stages_ == 1)
    std::memcpy(logits, state_.logits.data(), vocab * sizeof(float));
  else if (last)
    send(state_.logits.data(), vocab, 0, kLogitsTag);
  else if (stage_ == 0)
    recv(logits, vocab, stages_ - 1, kLogitsTag);
  stats_.prefill_tokens += static_cast<std::int64_t>(n);
}

void ProcessPipelineMistral::decode(std::span<const int> seqs, std::span<const std::int64_t> positions,
                                    std::span<const std::int32_t> tokens, float* logits) {
  if (positions.size() != seqs.size() || tokens.size() != seqs.size())
    throw UsageError("process pipeline decode: " + std::to_string(seqs.size()) + " sequences, " +
                     std::to_string(positions.size()) + " positions and " + std::to_string(tokens.size()) +
                     " tokens (one of each per sequence)");
  if (seqs.empty()) return;
  if (seqs.size() > static_cast<std::size_t>(options_.max_sequences))
    throw UsageError("process pipeline decode: " + std::to_string(seqs.size()) + " sequences, at most " +
                     std::to_string(options_.max_sequences));
  for (std::size_t i = 0; i < seqs.size(); ++i) check_sequence(seqs[i], positions[i], 1, "decode");
  // Two rows of one sequence in one step would append to its cache out of order.
  bool twice = false;
  for (int s : seqs) {
    twice = twice || seen_[static_cast<std::size_t>(s)] != 0;
    seen_[static_cast<std::size_t>(s)] = 1;
  }
  for (int s : seqs) seen_[static_cast<std::size_t>(s)] = 0;
  if (twice) throw UsageError("process pipeline decode: a sequence is given twice (one token per sequence per step)");
  check_tokens(tokens);
  check_logits(logits, "decode");

  const bool last = stage_ == stages_ - 1;
  const std::size_t vocab = static_cast<std::size_t>(model_.config.vocab_size);
  const int n = static_cast<int>(seqs.size());
  // With one stage nothing overlaps, and each micro-batch would read the weights again: one pass.
  const int m = stages_ == 1 ? 1 : std::min(n, options_.micro_batches);
  // Micro-batch i takes the next n / m sequences, the first n % m one more; every process
  // computes the same split, so each knows the size of every message.
  for (int i = 0, first = 0; i < m; ++i) {
    const int count = n / m + (i < n % m ? 1 : 0);
    runs_.clear();
    for (int r = 0; r < count; ++r) {
      const auto j = static_cast<std::size_t>(first + r);
      runs_.push_back(
          {.cache = &caches_[static_cast<std::size_t>(seqs[j])], .first_row = r, .n_rows = 1, .pos0 = positions[j]});
    }
    step(tokens.data() + first, count, last);
    if (last) {
      // The last stage's logits leave before its next micro-batch overwrites them: straight into
      // the caller's rows in one process, else into the rows sent to process 0 at the end.
      float* out = stages_ == 1 ? logits : step_logits_.data();
      std::memcpy(out + static_cast<std::size_t>(first) * vocab, state_.logits.data(),
                  static_cast<std::size_t>(count) * vocab * sizeof(float));
    }
    first += count;
  }
  if (stages_ > 1) {
    const std::size_t floats = static_cast<std::size_t>(n) * vocab;
    if (last)
      send(step_logits_.data(), floats, 0, kLogitsTag);
    else if (stage_ == 0)
      recv(logits, floats, stages_ - 1, kLogitsTag);
  }
  stats_.decode_tokens += n;
  ++stats_.decode_calls;
}

}  // namespace weft::model
