// The public Model, Context and Session, over the internal loader and forward pass.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "model/forward.hpp"
#include "model/model_impl.hpp"
#include "model/pipeline_model.hpp"
#include "model/processes_impl.hpp"
#if WEFT_HAVE_MPI
#include "model/process_pipeline.hpp"
#endif
#include "model/tensor_parallel_model.hpp"
#include "model/weights.hpp"
#include "parallel/exec_context.hpp"
#include "weft/error.hpp"
#include "weft/model.hpp"

namespace weft {


namespace {
ModelInfo describe(const model::LoadedModel& m) {
  const auto& c = m.config;
  ModelInfo i;
  i.source = m.source;
  i.format = m.format;
  i.architecture = c.architecture;
  i.dim = c.dim;
  i.hidden_dim = c.hidden_dim;
  i.n_layers = c.n_layers;
  i.n_heads = c.n_heads;
  i.n_kv_heads = c.n_kv_heads;
  i.head_dim = c.head_dim;
  i.vocab_size = c.vocab_size;
  i.sliding_window = c.sliding_window;
  i.max_position = c.max_position;
  const auto& w = m.weights;
  i.weight_dtype = std::string(dtype_name(w.layers.empty() ? w.embedding.dtype : w.layers[0].wq.dtype));
  std::size_t bytes = w.embedding.bytes() + w.final_norm.bytes();
  if (w.lm_head.data != w.embedding.data) bytes += w.lm_head.bytes();
  for (const auto& L : w.layers)
    for (const TensorView* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_norm, &L.w_gate, &L.w_up, &L.w_down})
      bytes += t->bytes();
  i.weight_bytes = bytes;
  // A decode step reads one embedding row, not the table (unless the table is also the lm_head).
  const bool tied = w.lm_head.data == w.embedding.data;
  i.decode_bytes = bytes - (tied ? 0 : w.embedding.bytes()) + w.embedding.row_bytes();
  return i;
}
}  // namespace

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::string& path, const LoadOptions& options) {
  std::shared_ptr<Model> m(new Model());
  if (model::is_shard_dir(path)) {  // the ranks read their own files when a session starts
    m->impl_->shards = std::make_shared<const model::ShardManifest>(model::read_shard_manifest(path));
    m->impl_->loaded = model::load_shard_info(*m->impl_->shards, options.tokenizer_path);
  } else {
    m->impl_->loaded = model::load_model(path, options.tokenizer_path, options.mmap, options.repack);
  }
  m->impl_->info = describe(m->impl_->loaded);
  if (m->impl_->shards) {
    m->impl_->info.weight_dtype = m->impl_->shards->weight_dtype;
    m->impl_->info.weight_bytes = m->impl_->info.decode_bytes = m->impl_->shards->weight_bytes;
  }
  if (m->impl_->loaded.tokenizer) m->impl_->tokenizer.emplace(m->impl_->loaded.tokenizer);
  return m;
}

const ModelInfo& Model::info() const noexcept { return impl_->info; }
const Tokenizer* Model::tokenizer() const noexcept { return impl_->tokenizer ? &*impl_->tokenizer : nullptr; }

struct Context::Impl {
  explicit Impl(int threads) : exec(threads) {}
  par::ExecContext exec;
};

Context::Context(int threads) : impl_(std::make_unique<Impl>(threads)) {}
Context::~Context() = default;
int Context::threads() const noexcept { return impl_->exec.threads(); }
void Context::set_stats(bool on) noexcept { impl_->exec.enable_stats(on); }
void Context::reset_stats() noexcept { impl_->exec.stats().reset(); }
std::string Context::stats_text() const { return impl_->exec.stats().summary(); }

std::string Context::stats_json() const {
  const par::WorkStealingStats& st = impl_->exec.stats();
  nlohmann::ordered_json j;
  j["tasks_created"] = st.tasks_created();
  j["tasks_run"] = st.tasks_run();
  j["tasks_stolen"] = st.tasks_stolen();
  j["chunks"] = st.chunks();
  j["steal_ratio"] = st.steal_ratio();
  j["threads"] = nlohmann::ordered_json::array();
  for (int i = 0; i < st.slots(); ++i) {
    const auto s = st.slot(i);
    j["threads"].push_back({{"slot", i}, {"tasks_created", s.tasks_created}, {"tasks_run", s.tasks_run},
                            {"tasks_stolen", s.tasks_stolen}, {"chunks", s.chunks}, {"busy_ns", s.busy_ns}});
  }
  return j.dump();
}

namespace {

// Refuses a context or block size whose KV caches and activations cannot fit in RAM: an absurd
// value would otherwise end in a multi-terabyte allocation that the kernel answers with the OOM
// killer (a signal, no message).
void check_memory(const Model& model, const model::MistralConfig& c, int threads, int ctx_len, int block, int sequences) {
  const bool rolling = c.sliding_window > 0 && c.sliding_window < ctx_len;
  const double slots = rolling ? c.sliding_window : ctx_len;
  const double floats = 2.0 * c.n_layers * slots * c.kv_dim() * sequences +
                        (threads + 1.0) * (c.n_heads / c.n_kv_heads) * (slots + block) +
                        block * (2.0 * c.dim + 2.0 * c.q_dim() + 2.0 * c.kv_dim() + c.hidden_dim + c.vocab_size);
  const double need = 4.0 * floats;
  const double have = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  if (have > 0 && need > have) {
    char text[400];
    std::snprintf(text, sizeof text, "%d sequence(s) with a context of %d positions and blocks of %d tokens need %.1f GB "
                  "for the KV caches and activations, more than this machine's %.1f GB of memory (lower -c/--context)",
                  sequences, ctx_len, block, need / 1e9, have / 1e9);
    throw UsageError(model.info().source + ": " + text);
  }
}

// Like llama.cpp, a default context of at most 4096 positions keeps the KV cache of a 32k-context
// model from taking gigabytes nobody asked for.
int context_length(const model::MistralConfig& c, int requested) {
  constexpr int kDefaultContext = 4096;
  if (requested < 0) throw UsageError("context must not be negative, got " + std::to_string(requested));
  return requested > 0 ? requested : std::clamp(c.max_position, 1, kDefaultContext);
}

}  // namespace

// Rank 0's side of a session over the processes of an MPI job: Open was posted when it was
// made, Close is posted when it ends (moves hand that over).
class ProcessLink {
 public:
  ProcessLink() = default;
  explicit ProcessLink(Processes::Impl* p) : p_(p) {}
  ProcessLink(ProcessLink&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  ProcessLink& operator=(ProcessLink&& o) noexcept {
    if (this != &o) {
      if (p_) p_->close();
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  ~ProcessLink() {
    if (p_) p_->close();
  }
  Processes::Impl* get() const noexcept { return p_; }

 private:
  Processes::Impl* p_ = nullptr;
};

// What Session and BatchSession share: sequences, each with its KV cache and position, and one set
// of activations for blocks of up to max_block rows.
struct SequenceSet {
  std::shared_ptr<const Model> model;
  par::ExecContext* exec = nullptr;
  std::vector<model::KVCache> caches;
  std::vector<std::int64_t> pos;
  model::ForwardState state;
  std::vector<model::SequenceRun> runs;  // reserved once: decoding allocates nothing
  // Pipeline parallelism (BatchOptions::pipeline_stages > 1): the stages own the KV caches, and
  // logits land in pipeline_logits instead of state.logits.
  std::unique_ptr<model::PipelineParallelMistral> pipeline;
  std::vector<float> pipeline_logits;
  std::vector<std::int64_t> step_positions;
  // Tensor parallelism (tp > 1, or a model from a shard directory): the ranks own the weight
  // shards, KV caches and activations; the gathered logits land in state.logits.
  std::unique_ptr<model::TensorParallelMistral> tp;
  std::unique_ptr<model::TensorParallelMistral::State> tp_state;
  std::vector<model::TensorParallelMistral::Run> tp_runs;
  // Several processes (an MPI job): rank 0 posts each step to the others before running it.
  ProcessLink processes;
#if WEFT_HAVE_MPI
  // Pipeline stages in processes (pipeline_stages = the job's processes): logits in pipeline_logits.
  std::unique_ptr<model::ProcessPipelineMistral> process_pipeline;
#endif

  int capacity = 0;     // positions each sequence's KV cache holds
  bool rolling = false;  // a sliding-window cache of `capacity` slots: unlimited positions

  SequenceSet(std::shared_ptr<const Model> m, Context& context, int context_positions, int block_size, int sequences,
              int pipeline_stages = 1, int micro_batches = 4, int tp_size = 1, const std::string& topology = {},
              Processes* procs = nullptr) {
    if (!m) throw UsageError("Session: model is null");
    if (block_size <= 0) throw UsageError("block_size must be positive, got " + std::to_string(block_size));
    if (pipeline_stages < 1) throw UsageError("pipeline_stages must be at least 1, got " + std::to_string(pipeline_stages));
    const auto& c = m->impl().loaded.config;
    const int ctx_len = context_length(c, context_positions);
    const int block = std::max(block_size, sequences);
    check_memory(*m, c, context.threads(), ctx_len, block, sequences);
    model = std::move(m);
    exec = &context.impl().exec;
    rolling = c.sliding_window > 0 && c.sliding_window < ctx_len;
    capacity = rolling ? c.sliding_window : ctx_len;
    pos.assign(static_cast<std::size_t>(sequences), 0);
    if (procs != nullptr && procs->size() > 1) {
      if (!procs->is_root())
        throw UsageError("rank " + std::to_string(procs->rank()) + " of the MPI job cannot open sessions: rank 0 drives "
                         "them and the other processes call Processes::serve()");
      if (pipeline_stages > 1) {
        use_process_pipeline(*procs, pipeline_stages, micro_batches, tp_size, sequences, ctx_len, block);
        return;
      }
      const int n = tensor_parallel_size(*model, tp_size);
      if (n < procs->size())
        throw UsageError("the " + std::to_string(procs->size()) + " processes of the MPI job split the model by tensor "
                         "parallelism: tp must be a multiple of them, got " + std::to_string(std::max(n, 1)));
      // The checks every process would make when it builds its ranks, made here before Open so
      // that a bad configuration ends with rank 0's message, not with every process failing.
      if (n % procs->size() != 0)
        throw UsageError("tensor-parallel size " + std::to_string(n) + " is not a multiple of the " +
                         std::to_string(procs->size()) + " processes (each process holds the same number of ranks)");
      if (!topology.empty())
        throw UsageError("a topology describes one machine; under MPI each process places its ranks on its own host "
                         "(drop --topology)");
      const auto& lm = model->impl().loaded;
      (void)model::TensorParallelLayout::make(c, n, lm.weights.layers.empty() ? DType::F32 : lm.weights.layers[0].w_down.dtype);
      model::OpenSession o{.mode = 1, .ranks = n, .micro_batches = 1, .sequences = sequences, .context = ctx_len,
                           .block = block, .dim = c.dim, .n_layers = c.n_layers, .n_heads = c.n_heads,
                           .n_kv_heads = c.n_kv_heads, .hidden_dim = c.hidden_dim, .vocab_size = c.vocab_size};
      procs->impl().open(o);
      processes = ProcessLink(&procs->impl());
      use_tensor_parallel(context, n, topology, sequences, ctx_len, block);
      return;
    }
    if (const int n = tensor_parallel_size(*model, tp_size); n > 0) {
      if (pipeline_stages > 1) throw UsageError("tensor and pipeline parallelism cannot be combined yet (tp " +
                                                std::to_string(n) + ", pipeline_stages " + std::to_string(pipeline_stages) + ")");
      use_tensor_parallel(context, n, topology, sequences, ctx_len, block);
      return;
    }
    if (pipeline_stages > 1) {
      // The stages own the KV caches and activations; logits land in pipeline_logits.
      par::PipelineConfig pc;
      pc.num_micro_batches = micro_batches;
      pc.async_execution = true;
      pipeline = std::make_unique<model::PipelineParallelMistral>(model->impl().loaded, pipeline_stages,
                                                                  std::max(1, context.threads() / pipeline_stages), pc,
                                                                  sequences, ctx_len, block);
      pipeline_logits.resize(static_cast<std::size_t>(block) * vocab());
      step_positions.reserve(static_cast<std::size_t>(sequences));
      return;
    }
    caches.reserve(static_cast<std::size_t>(sequences));
    for (int i = 0; i < sequences; ++i) caches.emplace_back(c, ctx_len);
    state = model::ForwardState(c, block, capacity, context.threads());
    runs.reserve(static_cast<std::size_t>(sequences));
  }

  // One pipeline stage per process of the MPI job (process k runs stage k's layers).
  void use_process_pipeline(Processes& procs, int stages, int micro_batches, int tp_size,
                            int sequences, int ctx_len, int block) {
    const auto& c = config();
    if (stages != procs.size())
      throw UsageError("pipeline stages across processes are one per process: pipeline_stages must be " +
                       std::to_string(procs.size()) + " under " + std::to_string(procs.size()) + " processes, got " +
                       std::to_string(stages));
    if (tp_size > 1) throw UsageError("tensor and pipeline parallelism cannot be combined yet (tp " + std::to_string(tp_size) +
                                      ", pipeline_stages " + std::to_string(stages) + ")");
    if (model->impl().shards)
      throw UsageError(model->info().source + " holds tensor-parallel shards; pipeline stages need the whole model");
    if (stages > c.n_layers)
      throw UsageError("pipeline: " + std::to_string(stages) + " stages but the model has only " +
                       std::to_string(c.n_layers) + " layers (a stage holds at least one layer)");
    if (micro_batches < 1)
      throw UsageError("pipeline: micro_batches must be at least 1, got " + std::to_string(micro_batches));
#if WEFT_HAVE_MPI
    const model::OpenSession o{.mode = 2, .ranks = stages, .micro_batches = micro_batches, .sequences = sequences,
                               .context = ctx_len, .block = block, .dim = c.dim, .n_layers = c.n_layers,
                               .n_heads = c.n_heads, .n_kv_heads = c.n_kv_heads, .hidden_dim = c.hidden_dim,
                               .vocab_size = c.vocab_size};
    procs.impl().open(o);
    processes = ProcessLink(&procs.impl());
    process_pipeline = std::make_unique<model::ProcessPipelineMistral>(
        model->impl().loaded, *procs.impl().comm,
        model::ProcessPipelineOptions{.exec = exec, .max_sequences = sequences, .context = ctx_len, .block = block,
                                      .micro_batches = micro_batches});
    pipeline_logits.resize(static_cast<std::size_t>(block) * vocab());
    step_positions.reserve(static_cast<std::size_t>(sequences));
#else
    (void)sequences;
    (void)ctx_len;
    (void)block;
#endif
  }

  // The tensor-parallel size to run with; 0 for the single-rank path.
  static int tensor_parallel_size(const Model& m, int requested) {
    if (requested < 1) throw UsageError("tp must be at least 1, got " + std::to_string(requested));
    if (const auto& s = m.impl().shards) {
      if (requested > 1 && requested != s->world_size)
        throw UsageError(m.info().source + " holds shards for tensor-parallel size " + std::to_string(s->world_size) +
                         ", not " + std::to_string(requested));
      return s->world_size;
    }
    return requested > 1 ? requested : 0;
  }

  // Splits the model over n ranks (or loads the shard directory's files, one per rank).
  void use_tensor_parallel(Context& context, int n, const std::string& topology, int sequences, int ctx_len, int block) {
    const model::TensorParallelOptions o{.tp = n, .threads = context.threads(), .topology = topology,
                                         .processes = processes.get() ? processes.get()->communicator() : nullptr};
    const Model::Impl& mi = model->impl();
    tp = mi.shards ? std::make_unique<model::TensorParallelMistral>(*mi.shards, o)
                   : std::make_unique<model::TensorParallelMistral>(mi.loaded, o);
    tp_state = tp->make_state(sequences, ctx_len, block);
    tp_runs.reserve(static_cast<std::size_t>(sequences));
    state.max_block = block;
    state.logits.resize(static_cast<std::size_t>(block) * vocab());
  }

  const model::MistralConfig& config() const { return model->impl().loaded.config; }
  std::size_t vocab() const { return static_cast<std::size_t>(config().vocab_size); }
  bool pipelined() const {
#if WEFT_HAVE_MPI
    if (process_pipeline) return true;
#endif
    return pipeline != nullptr;
  }
  const float* logits() const { return pipelined() ? pipeline_logits.data() : state.logits.data(); }

  void check_ids(std::span<const std::int32_t> tokens) const {
    for (std::int32_t id : tokens)
      if (id < 0 || id >= config().vocab_size)
        throw UsageError("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                         std::to_string(config().vocab_size) + ")");
  }
  void check_room(std::size_t seq, std::size_t n) const {
    if (!rolling && pos[seq] + static_cast<std::int64_t>(n) > capacity)
      throw UsageError("context full: " + std::to_string(pos[seq]) + " + " + std::to_string(n) +
                       " tokens exceed the context of " + std::to_string(capacity) + " positions");
  }

  // NaN/Inf weights (a corrupt or badly converted checkpoint) make every later logit NaN and the
  // sampler would quietly emit garbage; one pass over vocab floats per row is cheap next to the
  // forward pass, so the step fails instead, naming the model.
  void check_finite(int rows, std::int64_t position) const {
    const std::size_t n = static_cast<std::size_t>(rows) * vocab();
    const float* l = logits();
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(l[i])) {
        throw InputError(model->info().source + ": the forward pass produced a non-finite logit (" +
                         (std::isnan(l[i]) ? "NaN" : "Inf") + ") at position " + std::to_string(position) +
                         "; the weights contain NaN/Inf values or overflow, so the output would be garbage");
      }
    }
  }

  // Runs one sequence's tokens in blocks; calls sink(first_token_index, rows) after each block.
  template <class Sink>
  void run(std::size_t seq, std::span<const std::int32_t> tokens, bool all_logits, Sink&& sink) {
    if (tokens.empty()) throw UsageError("no tokens to process (empty prompt)");
    check_ids(tokens);
    check_room(seq, tokens.size());
    const auto& m = model->impl().loaded;
#if WEFT_HAVE_MPI
    if (process_pipeline) {
      processes.get()->post_prefill(static_cast<int>(seq), pos[seq], tokens);
      process_pipeline->prefill(static_cast<int>(seq), pos[seq], tokens, pipeline_logits.data());
      pos[seq] += static_cast<std::int64_t>(tokens.size());
      check_finite(1, pos[seq] - 1);
      return;
    }
#endif
    if (pipeline) {
      pipeline->prefill(static_cast<int>(seq), pos[seq], tokens, pipeline_logits.data());
      pos[seq] += static_cast<std::int64_t>(tokens.size());
      check_finite(1, pos[seq] - 1);
      return;
    }
    for (std::size_t b = 0; b < tokens.size(); b += static_cast<std::size_t>(state.max_block)) {
      const int n = static_cast<int>(std::min<std::size_t>(state.max_block, tokens.size() - b));
      if (tp) {
        const model::TensorParallelMistral::Run r{.seq = static_cast<int>(seq), .first_row = 0, .n_rows = n, .pos0 = pos[seq]};
        if (processes.get()) processes.get()->post_forward({&r, 1}, tokens.data() + b, n, all_logits);
        tp->forward(*tp_state, {&r, 1}, tokens.data() + b, n, all_logits, state.logits.data());
      } else {
        model::forward_block(m.config, m.weights, *exec, caches[seq], state, tokens.data() + b, n, pos[seq], all_logits);
      }
      pos[seq] += n;
      check_finite(all_logits ? n : 1, pos[seq] - 1);
      sink(b, n);
    }
  }

  // One token for each of the given sequences, in one forward pass; logits row i is seqs[i]'s.
  void step(std::span<const int> seqs, std::span<const std::int32_t> tokens) {
    if (pipelined()) {
      step_positions.clear();
      for (int q : seqs) step_positions.push_back(pos[static_cast<std::size_t>(q)]);
#if WEFT_HAVE_MPI
      if (process_pipeline) {
        processes.get()->post_decode(seqs, step_positions, tokens);
        process_pipeline->decode(seqs, step_positions, tokens, pipeline_logits.data());
      } else
#endif
        pipeline->decode(seqs, step_positions, tokens, pipeline_logits.data());
      for (int q : seqs) ++pos[static_cast<std::size_t>(q)];
      check_finite(static_cast<int>(seqs.size()), pos[static_cast<std::size_t>(seqs[0])] - 1);
      return;
    }
    if (tp) {
      tp_runs.clear();
      for (std::size_t i = 0; i < seqs.size(); ++i)
        tp_runs.push_back({.seq = seqs[i], .first_row = static_cast<int>(i), .n_rows = 1, .pos0 = pos[static_cast<std::size_t>(seqs[i])]});
      if (processes.get()) processes.get()->post_forward(tp_runs, tokens.data(), static_cast<int>(tokens.size()), false);
      tp->forward(*tp_state, tp_runs, tokens.data(), static_cast<int>(tokens.size()), false, state.logits.data());
      for (int q : seqs) ++pos[static_cast<std::size_t>(q)];
      check_finite(static_cast<int>(seqs.size()), pos[static_cast<std::size_t>(seqs[0])] - 1);
      return;
    }
    runs.clear();
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      const auto q = static_cast<std::size_t>(seqs[i]);
      runs.push_back({.cache = &caches[q], .first_row = static_cast<int>(i), .n_rows = 1, .pos0 = pos[q]});
    }
    const auto& m = model->impl().loaded;
    model::forward_runs(m.config, m.weights, *exec, runs, state, tokens.data(), static_cast<int>(tokens.size()), false);
    for (int q : seqs) ++pos[static_cast<std::size_t>(q)];
    check_finite(static_cast<int>(seqs.size()), pos[static_cast<std::size_t>(seqs[0])] - 1);
  }
};

struct Session::Impl {
  explicit Impl(SequenceSet s) : set(std::move(s)) {}
  SequenceSet set;
};

Session::Session(std::shared_ptr<const Model> model, Context& context, const SessionOptions& options)
    : impl_(std::make_unique<Impl>(SequenceSet(std::move(model), context, options.context, options.block_size, 1, 1, 4,
                                               options.tp, options.topology, options.processes))) {}

Session::~Session() = default;

std::span<const float> Session::prefill(std::span<const std::int32_t> tokens) {
  impl_->set.run(0, tokens, false, [](std::size_t, int) {});
  return {impl_->set.state.logits.data(), impl_->set.vocab()};
}

std::span<const float> Session::decode(std::int32_t token) { return prefill({&token, 1}); }

void Session::score(std::span<const std::int32_t> tokens, std::span<float> out) {
  const std::size_t vocab = impl_->set.vocab();
  if (out.size() != tokens.size() * vocab)
    throw UsageError("score: output holds " + std::to_string(out.size()) + " floats, need " +
                     std::to_string(tokens.size() * vocab));
  impl_->set.run(0, tokens, true, [&](std::size_t first, int n) {
    std::copy_n(impl_->set.state.logits.data(), static_cast<std::size_t>(n) * vocab, out.data() + first * vocab);
  });
}

void Session::reset() noexcept { impl_->set.pos[0] = 0; }
std::int64_t Session::position() const noexcept { return impl_->set.pos[0]; }
std::optional<std::int64_t> Session::context_limit() const noexcept {
  if (impl_->set.rolling) return std::nullopt;
  return impl_->set.capacity;
}
const Model& Session::model() const noexcept { return *impl_->set.model; }

struct BatchSession::Impl {
  Impl(SequenceSet s, int n) : set(std::move(s)), open(static_cast<std::size_t>(n), false), seen(static_cast<std::size_t>(n), false) {}
  SequenceSet set;
  std::vector<bool> open;
  std::vector<bool> seen;  // scratch for decode's duplicate check

  void check_open(int seq) const {
    if (seq < 0 || seq >= static_cast<int>(open.size()) || !open[static_cast<std::size_t>(seq)])
      throw UsageError("sequence " + std::to_string(seq) + " is not open in this batch");
  }
};

BatchSession::BatchSession(std::shared_ptr<const Model> model, Context& context, const BatchOptions& options) {
  if (options.max_sequences <= 0)
    throw UsageError("max_sequences must be positive, got " + std::to_string(options.max_sequences));
  impl_ = std::make_unique<Impl>(
      SequenceSet(std::move(model), context, options.context, options.block_size, options.max_sequences,
                  options.pipeline_stages, options.micro_batches, options.tp, options.topology, options.processes),
      options.max_sequences);
}

BatchSession::~BatchSession() = default;

int BatchSession::open() {
  for (std::size_t i = 0; i < impl_->open.size(); ++i) {
    if (!impl_->open[i]) {
      impl_->open[i] = true;
      impl_->set.pos[i] = 0;
      return static_cast<int>(i);
    }
  }
  throw UsageError("all " + std::to_string(impl_->open.size()) + " sequences of the batch are in use");
}

void BatchSession::close(int seq) {
  impl_->check_open(seq);
  impl_->open[static_cast<std::size_t>(seq)] = false;
}

std::span<const float> BatchSession::prefill(int seq, std::span<const std::int32_t> tokens) {
  impl_->check_open(seq);
  impl_->set.run(static_cast<std::size_t>(seq), tokens, false, [](std::size_t, int) {});
  return {impl_->set.logits(), impl_->set.vocab()};
}

std::span<const float> BatchSession::decode(std::span<const int> seqs, std::span<const std::int32_t> tokens) {
  if (seqs.empty()) throw UsageError("decode: no sequences given");
  if (seqs.size() != tokens.size())
    throw UsageError("decode: " + std::to_string(seqs.size()) + " sequences but " + std::to_string(tokens.size()) +
                     " tokens");
  Impl& m = *impl_;
  for (int q : seqs) m.check_open(q);
  std::fill(m.seen.begin(), m.seen.end(), false);
  for (int q : seqs) {
    if (m.seen[static_cast<std::size_t>(q)]) throw UsageError("decode: sequence " + std::to_string(q) + " given twice");
    m.seen[static_cast<std::size_t>(q)] = true;
    m.set.check_room(static_cast<std::size_t>(q), 1);
  }
  m.set.check_ids(tokens);
  m.set.step(seqs, tokens);
  return {m.set.logits(), seqs.size() * m.set.vocab()};
}

std::int64_t BatchSession::position(int seq) const {
  impl_->check_open(seq);
  return impl_->set.pos[static_cast<std::size_t>(seq)];
}

std::optional<std::int64_t> BatchSession::context_limit() const noexcept {
  if (impl_->set.rolling) return std::nullopt;
  return impl_->set.capacity;
}

int BatchSession::max_sequences() const noexcept { return static_cast<int>(impl_->open.size()); }
const Model& BatchSession::model() const noexcept { return *impl_->set.model; }

}  // namespace weft
