// The public Model, Context and Session, over the internal loader and forward pass.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "model/forward.hpp"
#include "model/weights.hpp"
#include "parallel/exec_context.hpp"
#include "weft/error.hpp"
#include "weft/model.hpp"

namespace weft {

struct Model::Impl {
  model::LoadedModel loaded;
  ModelInfo info;
  std::optional<Tokenizer> tokenizer;
};

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
  m->impl_->loaded = model::load_model(path, options.tokenizer_path, options.mmap);
  m->impl_->info = describe(m->impl_->loaded);
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

struct Session::Impl {
  std::shared_ptr<const Model> model;
  par::ExecContext* exec;
  model::KVCache cache;
  model::ForwardState state;
  std::int64_t pos = 0;

  const model::MistralConfig& config() const { return model->impl().loaded.config; }

  void check(std::span<const std::int32_t> tokens) const {
    if (tokens.empty()) throw UsageError("no tokens to process (empty prompt)");
    for (std::int32_t id : tokens)
      if (id < 0 || id >= config().vocab_size)
        throw UsageError("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                         std::to_string(config().vocab_size) + ")");
    if (!cache.rolling && pos + static_cast<std::int64_t>(tokens.size()) > cache.capacity)
      throw UsageError("context full: " + std::to_string(pos) + " + " + std::to_string(tokens.size()) +
                       " tokens exceed the context of " + std::to_string(cache.capacity) + " positions");
  }

  // NaN/Inf weights (a corrupt or badly converted checkpoint) make every later logit NaN and the
  // sampler would quietly emit garbage; one pass over vocab floats per step is cheap next to the
  // forward pass, so the step fails instead, naming the model.
  void check_finite(int rows) const {
    const std::size_t n = static_cast<std::size_t>(rows) * static_cast<std::size_t>(config().vocab_size);
    const float* l = state.logits.data();
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(l[i])) {
        throw InputError(model->info().source + ": the forward pass produced a non-finite logit (" +
                         (std::isnan(l[i]) ? "NaN" : "Inf") + ") at position " + std::to_string(pos - 1) +
                         "; the weights contain NaN/Inf values or overflow, so the output would be garbage");
      }
    }
  }

  // Runs tokens in blocks; calls sink(first_token_index, rows) after each block's logits.
  template <class Sink>
  void run(std::span<const std::int32_t> tokens, bool all_logits, Sink&& sink) {
    check(tokens);
    const auto& m = model->impl().loaded;
    for (std::size_t b = 0; b < tokens.size(); b += static_cast<std::size_t>(state.max_block)) {
      const int n = static_cast<int>(std::min<std::size_t>(state.max_block, tokens.size() - b));
      model::forward_block(m.config, m.weights, *exec, cache, state, tokens.data() + b, n, pos, all_logits);
      pos += n;
      check_finite(all_logits ? n : 1);
      sink(b, n);
    }
  }
};

Session::Session(std::shared_ptr<const Model> model, Context& context, const SessionOptions& options)
    : impl_(std::make_unique<Impl>()) {
  if (!model) throw UsageError("Session: model is null");
  if (options.block_size <= 0) throw UsageError("block_size must be positive, got " + std::to_string(options.block_size));
  if (options.context < 0) throw UsageError("context must not be negative, got " + std::to_string(options.context));
  const auto& c = model->impl().loaded.config;
  // Like llama.cpp, a default context of at most 4096 positions keeps the KV cache of a
  // 32k-context model from taking gigabytes nobody asked for.
  constexpr int kDefaultContext = 4096;
  const int ctx_len = options.context > 0 ? options.context : std::clamp(c.max_position, 1, kDefaultContext);
  // An absurd context or block size would otherwise end in a multi-terabyte allocation that the
  // kernel answers with the OOM killer (a signal, no message); refuse what cannot fit in RAM.
  {
    const bool rolling = c.sliding_window > 0 && c.sliding_window < ctx_len;
    const double slots = rolling ? c.sliding_window : ctx_len, block = options.block_size;
    const double floats = 2.0 * c.n_layers * slots * c.kv_dim() +
                          (context.threads() + 1.0) * (c.n_heads / c.n_kv_heads) * (slots + block) +
                          block * (2.0 * c.dim + 2.0 * c.q_dim() + 2.0 * c.kv_dim() + c.hidden_dim + c.vocab_size);
    const double need = 4.0 * floats;
    const double have = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
    if (have > 0 && need > have) {
      char text[400];
      std::snprintf(text, sizeof text, "a context of %d positions with blocks of %d tokens needs %.1f GB for the KV cache "
                    "and activations, more than this machine's %.1f GB of memory (lower -c/--context)",
                    ctx_len, options.block_size, need / 1e9, have / 1e9);
      throw UsageError(model->info().source + ": " + text);
    }
  }
  impl_->model = std::move(model);
  impl_->exec = &context.impl().exec;
  impl_->cache = model::KVCache(c, ctx_len);
  impl_->state = model::ForwardState(c, options.block_size, impl_->cache.capacity, context.threads());
}

Session::~Session() = default;

std::span<const float> Session::prefill(std::span<const std::int32_t> tokens) {
  impl_->run(tokens, false, [](std::size_t, int) {});
  return {impl_->state.logits.data(), static_cast<std::size_t>(impl_->config().vocab_size)};
}

std::span<const float> Session::decode(std::int32_t token) { return prefill({&token, 1}); }

void Session::score(std::span<const std::int32_t> tokens, std::span<float> out) {
  const auto vocab = static_cast<std::size_t>(impl_->config().vocab_size);
  if (out.size() != tokens.size() * vocab)
    throw UsageError("score: output holds " + std::to_string(out.size()) + " floats, need " +
                     std::to_string(tokens.size() * vocab));
  impl_->run(tokens, true, [&](std::size_t first, int n) {
    std::copy_n(impl_->state.logits.data(), static_cast<std::size_t>(n) * vocab, out.data() + first * vocab);
  });
}

void Session::reset() noexcept { impl_->pos = 0; }
std::int64_t Session::position() const noexcept { return impl_->pos; }
std::optional<std::int64_t> Session::context_limit() const noexcept {
  if (impl_->cache.rolling) return std::nullopt;
  return impl_->cache.capacity;
}
const Model& Session::model() const noexcept { return *impl_->model; }

}  // namespace weft
