#include "model/tensor_parallel_model.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <thread>

#include "parallel/hierarchical_communicator.hpp"
#include "parallel/placement.hpp"
#include "parallel/topology.hpp"
#include "weft/error.hpp"

namespace weft::model {

namespace fs = std::filesystem;
using io::WeightRole;
using par::TensorParallelConfig;
using par::TensorParallelStrategy;

namespace {

std::string shape_text(std::int64_t rows, std::int64_t cols, int ndim) {
  return ndim == 1 ? "[" + std::to_string(cols) + "]" : "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

std::int64_t units(std::int64_t n, std::int64_t granule) { return (n + granule - 1) / granule; }


bool uneven_ok(WeightRole role) {
  return role == WeightRole::WGate || role == WeightRole::WUp || role == WeightRole::WDown || role == WeightRole::Output;
}

// Each message once per process: several models in one process would otherwise repeat it.
std::atomic<bool> g_warned_oversubscribed{false};

}  // namespace

bool debug_enabled(const char* topic) noexcept {
  const char* env = std::getenv("WEFT_DEBUG");
  if (env == nullptr) return false;
  const std::string_view all(env), want(topic);
  std::size_t start = 0;
  while (start <= all.size()) {
    const std::size_t comma = all.find(',', start);
    const std::string_view item = all.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item == want || item == "all") return true;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Layout

TensorParallelLayout TensorParallelLayout::make(const MistralConfig& c, int tp, DType down_dtype) {
  if (tp < 1) throw UsageError("tensor-parallel size must be at least 1, got " + std::to_string(tp));
  TensorParallelLayout L;
  L.tp = tp;
  L.full = c;
  const std::string w = std::to_string(tp);
  const int nkv = c.n_kv_heads;
  if (tp <= nkv) {
    if (nkv % tp != 0)
      throw UsageError("num_key_value_heads (" + std::to_string(nkv) + ") is not divisible by tensor-parallel size " + w);
    L.kv_heads = nkv / tp;
    L.kv_copies = 1;
  } else {
    // More ranks than KV heads: each KV head goes to the same number of ranks, those whose query
    // heads use it.
    if (tp % nkv != 0)
      throw UsageError("num_key_value_heads (" + std::to_string(nkv) + ") is not divisible by tensor-parallel size " + w +
                       ", nor is " + w + " a multiple of it (to copy each KV head to the same number of ranks)");
    L.kv_heads = 1;
    L.kv_copies = tp / nkv;
  }
  if (c.n_heads % tp != 0)
    throw UsageError("num_attention_heads (" + std::to_string(c.n_heads) + ") is not divisible by tensor-parallel size " + w);
  L.q_heads = c.n_heads / tp;
  L.hidden_granule = std::lcm<std::int64_t>(16, static_cast<std::int64_t>(dtype_block_size(down_dtype)));
  L.vocab_granule = 16;
  auto need_units = [&](const char* name, std::int64_t n, std::int64_t g) {
    if (units(n, g) < tp)
      throw UsageError(std::string(name) + " (" + std::to_string(n) + ") is too small for tensor-parallel size " + w +
                       ": it is split in units of " + std::to_string(g) + ", so at most " + std::to_string(units(n, g)) +
                       " ranks get a part");
  };
  need_units("intermediate_size", c.hidden_dim, L.hidden_granule);
  need_units("vocab_size", c.vocab_size, L.vocab_granule);
  return L;
}

TensorParallelLayout::Cut TensorParallelLayout::cut(WeightRole role, int rank) const {
  Cut k;
  k.cfg = TensorParallelConfig{tp, rank};
  switch (role) {
    case WeightRole::Wq:
      return {TensorParallelStrategy::ColumnParallel, k.cfg, full.head_dim};
    case WeightRole::Wk:
    case WeightRole::Wv:
      if (kv_copies > 1) return {TensorParallelStrategy::ColumnParallel, {full.n_kv_heads, rank / kv_copies}, full.head_dim};
      return {TensorParallelStrategy::ColumnParallel, k.cfg, full.head_dim};
    case WeightRole::Wo:
      return {TensorParallelStrategy::RowParallel, k.cfg, full.head_dim};
    case WeightRole::WGate:
    case WeightRole::WUp:
      return {TensorParallelStrategy::ColumnParallel, k.cfg, hidden_granule};
    case WeightRole::WDown:
      return {TensorParallelStrategy::RowParallel, k.cfg, hidden_granule};
    case WeightRole::Output:
      return {TensorParallelStrategy::ColumnParallel, k.cfg, vocab_granule};
    default:
      return {TensorParallelStrategy::None, k.cfg, 1};
  }
}

TensorParallelLayout::Part TensorParallelLayout::part(WeightRole role, int rank, std::int64_t rows, std::int64_t cols,
                                                      DType dtype) const {
  const Cut k = cut(role, rank);
  Part p{0, rows, cols};
  if (k.strategy == TensorParallelStrategy::ColumnParallel) {
    p.offset = k.cfg.local_offset(rows, k.granule);
    p.rows = k.cfg.local_size(rows, k.granule);
  } else if (k.strategy == TensorParallelStrategy::RowParallel) {
    const std::int64_t g = std::lcm(k.granule, static_cast<std::int64_t>(dtype_block_size(dtype)));
    p.offset = k.cfg.local_offset(cols, g);
    p.cols = k.cfg.local_size(cols, g);
  }
  return p;
}

MistralConfig TensorParallelLayout::local_config(int rank) const {
  MistralConfig c = full;
  const TensorParallelConfig cfg{tp, rank};
  c.n_heads = q_heads;
  c.n_kv_heads = kv_heads;
  c.hidden_dim = static_cast<int>(cfg.local_size(full.hidden_dim, hidden_granule));
  c.vocab_size = static_cast<int>(cfg.local_size(full.vocab_size, vocab_granule));
  return c;
}

std::int64_t TensorParallelLayout::vocab_offset(int rank) const {
  return TensorParallelConfig{tp, rank}.local_offset(full.vocab_size, vocab_granule);
}

// ---------------------------------------------------------------------------------------------
// Shard directories

bool is_shard_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::exists(fs::path(path) / "manifest.json", ec);
}

ShardManifest read_shard_manifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / "manifest.json").string();
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot read the shard manifest");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": not valid JSON: " + e.what());
  }
  auto fail = [&](const std::string& what) -> void { throw InputError(path + ": " + what); };
  if (!j.is_object() || j.value("format", std::string()) != "weft-tensor-parallel-shards")
    fail("not a weft shard manifest (\"format\" must be \"weft-tensor-parallel-shards\")");
  ShardManifest m;
  m.dir = dir;
  if (!j.contains("world_size") || !j["world_size"].is_number_integer() || j["world_size"].get<int>() < 1 ||
      j["world_size"].get<int>() > 65536)
    fail("\"world_size\" must be a positive integer");
  m.world_size = j["world_size"].get<int>();
  if (!j.contains("ranks") || !j["ranks"].is_array() || j["ranks"].size() != static_cast<std::size_t>(m.world_size))
    fail("\"ranks\" must list one entry per rank (" + std::to_string(m.world_size) + ")");
  for (const auto& r : j["ranks"]) {
    if (!r.is_object() || !r.contains("file") || !r["file"].is_string()) fail("every rank needs a \"file\" string");
    const std::string f = r["file"].get<std::string>();
    if (f.empty() || f.find('/') != std::string::npos || f == "..") fail("rank file \"" + f + "\" must be a plain file name");
    m.files.push_back(f);
  }
  m.format = j.value("source_format", std::string());
  if (j.contains("tokenizer") && j["tokenizer"].is_string()) m.tokenizer = j["tokenizer"].get<std::string>();
  if (m.tokenizer.find('/') != std::string::npos) fail("\"tokenizer\" must be a plain file name");
  if (j.contains("weight_dtype") && j["weight_dtype"].is_string()) m.weight_dtype = j["weight_dtype"].get<std::string>();
  if (j.contains("weight_bytes") && j["weight_bytes"].is_number_unsigned()) m.weight_bytes = j["weight_bytes"].get<std::uint64_t>();
  m.config = parse_hf_config((fs::path(dir) / "config.json").string());
  return m;
}

LoadedModel load_shard_info(const ShardManifest& manifest, const std::string& tokenizer_path) {
  LoadedModel m;
  m.source = manifest.dir;
  m.format = "tp-shards";
  m.config = manifest.config;
  const std::string tok = !tokenizer_path.empty() ? tokenizer_path
                          : manifest.tokenizer.empty() ? std::string()
                                                       : (fs::path(manifest.dir) / manifest.tokenizer).string();
  if (!tok.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(tok, ec)) throw InputError(tok + ": no such tokenizer file");
    m.tokenizer = std::make_shared<const tok::Tokenizer>(tok.ends_with(".bin") ? tok::Tokenizer::from_llama2c_file(tok)
                                                                               : tok::Tokenizer::from_sentencepiece_file(tok));
    if (m.tokenizer->vocab_size() > m.config.vocab_size)
      throw InputError(tok + ": tokenizer has " + std::to_string(m.tokenizer->vocab_size()) +
                       " tokens but the model's vocabulary is " + std::to_string(m.config.vocab_size));
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// The model

void TensorParallelMistral::start(const TensorParallelOptions& o) {
  debug_ = debug_enabled("tp");
  const int tp = layout_.tp;
  const int processes = o.processes ? o.processes->world_size() : 1;
  const int process = o.processes ? o.processes->rank() : 0;
  if (tp % processes != 0)
    throw UsageError("tensor-parallel size " + std::to_string(tp) + " is not a multiple of the " +
                     std::to_string(processes) + " processes (each process holds the same number of ranks)");
  if (processes > 1 && !o.topology.empty())
    throw UsageError("a topology describes one machine; under MPI each process places its ranks on its own host "
                     "(drop --topology)");
  const int local = tp / processes;
  first_rank_ = process * local;
  const int total = o.threads > 0 ? o.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int per_rank = std::max(1, total / local);
  if (o.topology.empty()) {
    std::optional<par::Topology> topo;
    try {
      topo.emplace(par::Topology::detect());
    } catch (const Error&) {
    }
    const int cores = topo ? static_cast<int>(topo->cores().size()) : 0;
    if (topo && local <= cores) {
      group_ = std::make_unique<par::RankGroup>(*topo, par::place_ranks(*topo, local, per_rank));
    } else {
      // More ranks than cores (or no topology): correct, not fast; the ranks share the cores.
      if (!g_warned_oversubscribed.exchange(true))
        std::fprintf(stderr, "weft: warning: %d tensor-parallel ranks on %d cores: the ranks share cores and run unpinned\n",
                     local, cores);
      group_ = std::make_unique<par::RankGroup>(local, per_rank);
    }
  } else {
    const par::Topology topo = par::Topology::from_synthetic(o.topology);
    group_ = std::make_unique<par::RankGroup>(topo, par::place_ranks(topo, local, per_rank));
  }
  world_ = std::make_unique<par::SharedMemoryWorld>(local);
  counts_.assign(static_cast<std::size_t>(tp), 0);
  for (int q = 0; q < tp; ++q) rank_vocab_.push_back(static_cast<std::size_t>(layout_.local_config(q).vocab_size));
  for (int r = 0; r < local; ++r) {
    auto d = std::make_unique<RankData>();
    d->global_rank = first_rank_ + r;
    d->config = layout_.local_config(d->global_rank);
    d->weights.layers.resize(static_cast<std::size_t>(layout_.full.n_layers));
    if (processes == 1) {
      d->comm = &world_->communicator(r);
    } else if (local == 1) {
      d->comm = o.processes;  // one rank per process: the processes' communicator itself
    } else {
      process_comms_.push_back(std::make_unique<par::HierarchicalCommunicator>(
          world_->communicator(r), r == 0 ? o.processes : nullptr, process, processes));
      d->comm = process_comms_.back().get();
    }
    ranks_.push_back(std::move(d));
  }
}

TensorParallelMistral::TensorParallelMistral(const LoadedModel& model, const TensorParallelOptions& options) {
  if (model.weights.layers.empty()) throw UsageError(model.source + ": the model has no weights to split");
  layout_ = TensorParallelLayout::make(model.config, options.tp, model.weights.layers[0].w_down.dtype);
  start(options);
  group_->run([&](int r) {
    RankData& d = *ranks_[static_cast<std::size_t>(r)];
    d.shards.reserve(static_cast<std::size_t>(layout_.full.n_layers) * 7 + 1);
    for (const auto& n : io::weight_names()) {
      const int layers = n.per_layer ? layout_.full.n_layers : 1;
      for (int l = 0; l < layers; ++l) {
        const int li = n.per_layer ? l : -1;
        const TensorView& full = weight_slot(model.weights, n.role, li);
        const TensorParallelLayout::Cut k = layout_.cut(n.role, d.global_rank);
        if (k.strategy == TensorParallelStrategy::None) {
          weight_slot(d.weights, n.role, li) = full;  // replicated: a view of the shared model
          continue;
        }
        par::ShardOptions so;
        so.name = n.per_layer ? io::layer_name(n.hf, l) : std::string(n.hf);
        so.granule = k.granule;
        so.allow_uneven = uneven_ok(n.role);
        d.shards.push_back(par::make_shard(full, k.strategy, k.cfg, so, &group_->rank(r)));
        d.shard_bytes += d.shards.back().view.bytes();
        weight_slot(d.weights, n.role, li) = d.shards.back().view;
      }
    }
  });
  if (debug_) log_shards();
}

TensorParallelMistral::TensorParallelMistral(const ShardManifest& manifest, const TensorParallelOptions& options) {
  if (options.tp > 1 && options.tp != manifest.world_size)
    throw UsageError(manifest.dir + " holds shards for tensor-parallel size " + std::to_string(manifest.world_size) +
                     ", not " + std::to_string(options.tp));
  // Safetensors shards hold F32/F16/BF16 only, so the MLP split has no block constraint.
  layout_ = TensorParallelLayout::make(manifest.config, manifest.world_size, DType::F32);
  start(options);
  group_->run([&](int r) {
    RankData& d = *ranks_[static_cast<std::size_t>(r)];
    const int g = d.global_rank;
    const std::string path = (fs::path(manifest.dir) / manifest.files[static_cast<std::size_t>(g)]).string();
    d.files.push_back(path);
    d.file = std::make_unique<io::SafetensorsFile>(path);
    const io::SafetensorsFile& f = *d.file;
    const MistralConfig& c = layout_.full;
    d.shards.reserve(static_cast<std::size_t>(c.n_layers) * 7 + 1);
    for (const auto& n : io::weight_names()) {
      const int layers = n.per_layer ? c.n_layers : 1;
      for (int l = 0; l < layers; ++l) {
        const int li = n.per_layer ? l : -1;
        const std::string name = n.per_layer ? io::layer_name(n.hf, l) : std::string(n.hf);
        const io::SafetensorsEntry* e = f.find(name);
        if (e == nullptr) throw InputError(path + ": tensor " + name + " is missing (rank " + std::to_string(g) + ")");
        // The full shape of the role, then this rank's part of it.
        std::int64_t rows = 1, cols = c.dim;
        int ndim = 1;
        switch (n.role) {
          case WeightRole::TokenEmbedding:
          case WeightRole::Output: rows = c.vocab_size, ndim = 2; break;
          case WeightRole::Wq: rows = c.q_dim(), ndim = 2; break;
          case WeightRole::Wk:
          case WeightRole::Wv: rows = c.kv_dim(), ndim = 2; break;
          case WeightRole::Wo: rows = c.dim, cols = c.q_dim(), ndim = 2; break;
          case WeightRole::WGate:
          case WeightRole::WUp: rows = c.hidden_dim, ndim = 2; break;
          case WeightRole::WDown: rows = c.dim, cols = c.hidden_dim, ndim = 2; break;
          default: break;
        }
        const TensorParallelLayout::Part p = layout_.part(n.role, g, rows, cols, e->dtype);
        const std::vector<std::int64_t> want = ndim == 1 ? std::vector<std::int64_t>{p.cols} : std::vector<std::int64_t>{p.rows, p.cols};
        if (e->shape != want)
          throw InputError(path + ": tensor " + name + " has shape " +
                           (e->shape.size() == 2 ? shape_text(e->shape[0], e->shape[1], 2)
                                                 : (e->shape.size() == 1 ? shape_text(1, e->shape[0], 1) : "(other)")) +
                           ", expected " + shape_text(p.rows, p.cols, ndim) + " for rank " + std::to_string(g) + " of " +
                           std::to_string(layout_.tp));
        const TensorView v = ndim == 1 ? make_view_1d(e->data.data(), e->dtype, p.cols)
                                       : make_view_2d(e->data.data(), e->dtype, p.rows, p.cols);
        if (layout_.cut(n.role, g).strategy == TensorParallelStrategy::None) {
          weight_slot(d.weights, n.role, li) = v;  // replicated: a view of the rank's own mapped file
          continue;
        }
        // The rank's shard, copied by its threads into memory on its node.
        d.shards.push_back(par::make_shard(v, TensorParallelStrategy::None, {1, 0}, {.name = name}, &group_->rank(r)));
        d.shard_bytes += d.shards.back().view.bytes();
        weight_slot(d.weights, n.role, li) = d.shards.back().view;
      }
    }
  });
  if (debug_) log_shards();
}

TensorParallelMistral::~TensorParallelMistral() {
  // Driver threads stop before the shards and the communicators they use go away.
  group_.reset();
}

int TensorParallelMistral::threads_per_rank() const noexcept { return group_->size() > 0 ? group_->rank(0).threads() : 0; }

void TensorParallelMistral::log_shards() const {
  const MistralConfig& c = layout_.full;
  for (int lr = 0; lr < local_ranks(); ++lr) {
    const RankData& d = *ranks_[static_cast<std::size_t>(lr)];
    const int r = d.global_rank;
    par::Rank& rk = group_->rank(lr);
    const LayerWeights& L = d.weights.layers[0];
    auto sh = [](const TensorView& v) { return shape_text(v.rows, v.cols, v.ndim); };
    const int q0 = r * layout_.q_heads;
    const int kv0 = layout_.kv_copies > 1 ? r / layout_.kv_copies : r * layout_.kv_heads;
    const std::int64_t h0 = TensorParallelConfig{layout_.tp, r}.local_offset(c.hidden_dim, layout_.hidden_granule);
    const std::int64_t v0 = layout_.vocab_offset(r);
    std::fprintf(stderr,
                 "weft: tp: rank %d of %d: %d thread(s), %s%s; query heads %d-%d, KV heads %d-%d%s, MLP columns "
                 "%lld-%lld, vocabulary rows %lld-%lld\n"
                 "weft: tp: rank %d shards (every layer): wq %s wk %s wv %s wo %s gate %s up %s down %s; lm_head %s; "
                 "%zu bytes of shards on its node%s\n",
                 r, layout_.tp, rk.threads(),
                 rk.placement().cores.empty() ? "unplaced"
                                              : ("cores " + par::format_int_list(rk.placement().cores) + " on NUMA node " +
                                                 std::to_string(rk.placement().numa_node)).c_str(),
                 rk.pinned() ? ", pinned" : ", unpinned", q0, q0 + layout_.q_heads - 1, kv0, kv0 + layout_.kv_heads - 1,
                 layout_.kv_copies > 1 ? (" (copied on " + std::to_string(layout_.kv_copies) + " ranks)").c_str() : "",
                 static_cast<long long>(h0), static_cast<long long>(h0 + d.config.hidden_dim - 1),
                 static_cast<long long>(v0), static_cast<long long>(v0 + d.config.vocab_size - 1), r, sh(L.wq).c_str(),
                 sh(L.wk).c_str(), sh(L.wv).c_str(), sh(L.wo).c_str(), sh(L.w_gate).c_str(), sh(L.w_up).c_str(),
                 sh(L.w_down).c_str(), sh(d.weights.lm_head).c_str(), d.shard_bytes,
                 d.files.empty() ? "" : (", read from " + d.files[0]).c_str());
  }
}

std::unique_ptr<TensorParallelMistral::State> TensorParallelMistral::make_state(int sequences, int context, int max_block) {
  if (sequences < 1 || context < 1 || max_block < 1)
    throw UsageError("tensor-parallel state needs at least one sequence, position and block row");
  auto st = std::make_unique<State>();
  st->ranks.resize(ranks_.size());
  st->max_block = max_block;
  const auto vocab = static_cast<std::size_t>(layout_.full.vocab_size);
  group_->run([&](int r) {  // each rank first-touches its caches and activations
    State::PerRank& p = st->ranks[static_cast<std::size_t>(r)];
    const MistralConfig& c = ranks_[static_cast<std::size_t>(r)]->config;
    p.caches.reserve(static_cast<std::size_t>(sequences));
    for (int i = 0; i < sequences; ++i) p.caches.emplace_back(c, context);
    p.fwd = ForwardState(c, max_block, p.caches.front().capacity, group_->rank(r).threads());
    p.runs.reserve(static_cast<std::size_t>(sequences));
    p.gather.resize(static_cast<std::size_t>(max_block) * vocab);
  });
  st->capacity = st->ranks[0].caches[0].capacity;
  st->rolling = st->ranks[0].caches[0].rolling;
  return st;
}

void TensorParallelMistral::all_reduce_hook(void* ctx, float* data, std::size_t n) noexcept {
  auto* d = static_cast<RankData*>(ctx);
  d->comm->all_reduce_sum(data, n);
  d->reduce_bytes += n * sizeof(float);
  ++d->reduce_calls;
}

void TensorParallelMistral::forward(State& st, std::span<const Run> runs, const std::int32_t* tokens, int n,
                                    bool all_logits, float* logits) {
  const int tp = layout_.tp;
  const auto rows = static_cast<std::size_t>(all_logits ? n : static_cast<int>(runs.size()));
  const auto vocab = static_cast<std::size_t>(layout_.full.vocab_size);
  for (int r = 0; r < tp; ++r) counts_[static_cast<std::size_t>(r)] = rows * rank_vocab_[static_cast<std::size_t>(r)];
  group_->run([&](int r) {
    RankData& d = *ranks_[static_cast<std::size_t>(r)];
    State::PerRank& p = st.ranks[static_cast<std::size_t>(r)];
    p.runs.clear();
    for (const Run& q : runs)
      p.runs.push_back({.cache = &p.caches[static_cast<std::size_t>(q.seq)], .first_row = q.first_row, .n_rows = q.n_rows,
                        .pos0 = q.pos0});
    ForwardOptions fo;
    if (tp > 1) {
      fo.all_reduce = &TensorParallelMistral::all_reduce_hook;
      fo.all_reduce_ctx = &d;
    }
    forward_runs(d.config, d.weights, group_->rank(r).context(), p.runs, p.fwd, tokens, n, all_logits, fo);
    // The ranks' vocabulary slices, gathered rank-major; one row is already the full row.
    float* dst = rows == 1 && r == 0 ? logits : p.gather.data();
    d.comm->all_gatherv(p.fwd.logits.data(), counts_, dst);
    if (r != 0 || rows == 1) return;
    std::size_t base = 0, col = 0;
    for (int q = 0; q < tp; ++q) {
      const std::size_t lv = rank_vocab_[static_cast<std::size_t>(q)];
      for (std::size_t t = 0; t < rows; ++t) std::memcpy(logits + t * vocab + col, dst + base + t * lv, lv * sizeof(float));
      base += lv * rows;
      col += lv;
    }
  });
  ++steps_;
  if (debug_) {
    std::uint64_t gathered = 0;
    for (std::size_t c : counts_) gathered += c * sizeof(float);
    for (auto& dp : ranks_) {
      RankData& d = *dp;
      const int r = d.global_rank;
      const std::uint64_t sent = counts_[static_cast<std::size_t>(r)] * sizeof(float);
      std::fprintf(stderr,
                   "weft: tp: step %llu (%d tokens, %zu logits rows): rank %d all-reduced %llu B in %llu calls, gathered "
                   "logits: %llu B sent, %llu B received\n",
                   static_cast<unsigned long long>(steps_), n, rows, r, static_cast<unsigned long long>(d.reduce_bytes),
                   static_cast<unsigned long long>(d.reduce_calls), static_cast<unsigned long long>(sent),
                   static_cast<unsigned long long>(gathered - sent));
      d.reduce_bytes = d.reduce_calls = 0;
    }
  }
}

}  // namespace weft::model
