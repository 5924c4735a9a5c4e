// `weft plan` and `weft shard`: the tensor-parallel split of a checkpoint, reported or written out.
// Both use TensorParallelLayout, the rules the tensor-parallel model itself runs with.
#include "weft/plan.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "io/safetensors.hpp"
#include "io/weight_names.hpp"
#include "model/config.hpp"
#include "model/tensor_parallel_model.hpp"
#include "model/weights.hpp"
#include "parallel/topology.hpp"
#include "weft/error.hpp"

namespace weft {

namespace fs = std::filesystem;
using io::WeightRole;
using model::TensorParallelLayout;
using par::TensorParallelStrategy;

namespace {

constexpr int kMaxWorldSize = 64;

// One weight of the checkpoint: enough to plan and to cut it.
struct Desc {
  std::string name;
  WeightRole role;
  DType dtype = DType::F32;
  std::int64_t rows = 1, cols = 0;
  int ndim = 2;
  bool tied = false;
  const void* data = nullptr;  // null when planned from a config alone
  std::size_t bytes() const { return dtype_bytes(dtype, static_cast<std::size_t>(cols)) * static_cast<std::size_t>(rows); }
};

const char* role_name(WeightRole r) {
  switch (r) {
    case WeightRole::TokenEmbedding: return "embedding";
    case WeightRole::AttnNorm: return "attn_norm";
    case WeightRole::Wq: return "attn.q";
    case WeightRole::Wk: return "attn.k";
    case WeightRole::Wv: return "attn.v";
    case WeightRole::Wo: return "attn.o";
    case WeightRole::FfnNorm: return "ffn_norm";
    case WeightRole::WGate: return "mlp.gate";
    case WeightRole::WUp: return "mlp.up";
    case WeightRole::WDown: return "mlp.down";
    case WeightRole::OutputNorm: return "final_norm";
    case WeightRole::Output: return "lm_head";
  }
  return "?";
}


// Every weight of a loaded model, in checkpoint (weight-name table) order, layer by layer.
std::vector<Desc> describe_model(const model::LoadedModel& m) {
  std::vector<Desc> out;
  const bool tied = m.weights.lm_head.data == m.weights.embedding.data;
  // Global tensors first (embedding, final norm, lm_head), then layer by layer.
  for (int l = -1; l < m.config.n_layers; ++l) {
    for (const auto& n : io::weight_names()) {
      if (n.per_layer != (l >= 0)) continue;
      const TensorView& v = model::weight_slot(m.weights, n.role, l);
      Desc d;
      d.name = l >= 0 ? io::layer_name(n.hf, l) : std::string(n.hf);
      d.role = n.role;
      d.dtype = v.dtype;
      d.rows = v.rows;
      d.cols = v.cols;
      d.ndim = v.ndim;
      d.tied = n.role == WeightRole::Output && tied;
      d.data = v.data;
      out.push_back(d);
    }
  }
  return out;
}

// The same shapes from a config alone.
std::vector<Desc> describe_config(const model::MistralConfig& c, DType t) {
  std::vector<Desc> out;
  auto shape = [&](WeightRole r, Desc& d) {
    d.ndim = 2;
    switch (r) {
      case WeightRole::TokenEmbedding:
      case WeightRole::Output: d.rows = c.vocab_size, d.cols = c.dim; break;
      case WeightRole::Wq: d.rows = c.q_dim(), d.cols = c.dim; break;
      case WeightRole::Wk:
      case WeightRole::Wv: d.rows = c.kv_dim(), d.cols = c.dim; break;
      case WeightRole::Wo: d.rows = c.dim, d.cols = c.q_dim(); break;
      case WeightRole::WGate:
      case WeightRole::WUp: d.rows = c.hidden_dim, d.cols = c.dim; break;
      case WeightRole::WDown: d.rows = c.dim, d.cols = c.hidden_dim; break;
      default: d.rows = 1, d.cols = c.dim, d.ndim = 1; break;
    }
  };
  for (int l = -1; l < c.n_layers; ++l) {
    for (const auto& n : io::weight_names()) {
      if (n.per_layer != (l >= 0)) continue;
      Desc d;
      d.name = l >= 0 ? io::layer_name(n.hf, l) : std::string(n.hf);
      d.role = n.role;
      d.dtype = t;
      d.tied = n.role == WeightRole::Output && c.tie_embeddings;
      shape(n.role, d);
      out.push_back(d);
    }
  }
  return out;
}

DType down_dtype(const std::vector<Desc>& ds) {
  for (const Desc& d : ds)
    if (d.role == WeightRole::WDown) return d.dtype;
  return DType::F32;
}

std::uint64_t part_bytes(const Desc& d, const TensorParallelLayout::Part& p) {
  return dtype_bytes(d.dtype, static_cast<std::size_t>(p.cols)) * static_cast<std::uint64_t>(p.rows);
}

// Weight bytes of every rank at world size n.
std::vector<std::uint64_t> rank_bytes_at(const model::MistralConfig& c, const std::vector<Desc>& ds, int n) {
  const TensorParallelLayout L = TensorParallelLayout::make(c, n, down_dtype(ds));
  std::vector<std::uint64_t> out(static_cast<std::size_t>(n), 0);
  for (const Desc& d : ds)
    for (int r = 0; r < n; ++r) out[static_cast<std::size_t>(r)] += part_bytes(d, L.part(d.role, r, d.rows, d.cols, d.dtype));
  return out;
}

// Per rank at world size n: one token's activations plus the logits gather buffer.
std::uint64_t buffer_bytes_at(const TensorParallelLayout& L, int rank) {
  const model::MistralConfig lc = L.local_config(rank);
  const std::uint64_t floats = 2ull * lc.dim + 2ull * lc.q_dim() + 2ull * lc.kv_dim() + lc.hidden_dim + lc.vocab_size +
                               static_cast<std::uint64_t>(L.full.vocab_size);
  return floats * 4;
}

std::uint64_t machine_budget(std::string& source) {
  try {
    const par::Topology t = par::Topology::detect();
    std::uint64_t best = 0;
    for (const auto& n : t.numa_nodes())
      if (!n.cores.empty() && n.memory_bytes > 0 && (best == 0 || n.memory_bytes < best)) best = n.memory_bytes;
    if (best > 0) {
      source = t.numa_nodes().size() > 1 ? "the smallest NUMA node of this machine" : "this machine's memory (one NUMA node)";
      return best;
    }
  } catch (const Error&) {
  }
  source = "this machine's memory";
  return static_cast<std::uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::string human(std::uint64_t b) {
  char buf[48];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1ull << 20));
  else if (b >= (1ull << 10)) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / (1ull << 10));
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

TensorParallelPlan make_plan(const std::string& source, const std::string& format, const model::MistralConfig& c,
                             const std::vector<Desc>& ds, const PlanOptions& o) {
  const int n = o.world_size;
  const TensorParallelLayout L = TensorParallelLayout::make(c, n, down_dtype(ds));  // throws the reason
  TensorParallelPlan p;
  p.source = source;
  p.format = format;
  p.world_size = n;
  p.dim = c.dim, p.hidden_dim = c.hidden_dim, p.n_layers = c.n_layers, p.n_heads = c.n_heads;
  p.n_kv_heads = c.n_kv_heads, p.head_dim = c.head_dim, p.vocab_size = c.vocab_size;
  p.q_heads_per_rank = L.q_heads;
  p.kv_heads_per_rank = L.kv_heads;
  p.kv_copies = L.kv_copies;
  p.rank_bytes.assign(static_cast<std::size_t>(n), 0);
  for (const Desc& d : ds) {
    TensorPlan t;
    t.name = d.name;
    t.role = role_name(d.role);
    const auto strategy = L.cut(d.role, 0).strategy;
    t.strategy = std::string(par::strategy_name(strategy));
    t.dtype = std::string(dtype_name(d.dtype));
    t.shape = d.ndim == 1 ? std::vector<std::int64_t>{d.cols} : std::vector<std::int64_t>{d.rows, d.cols};
    t.bytes = d.bytes();
    t.parameters = static_cast<std::uint64_t>(d.rows) * static_cast<std::uint64_t>(d.cols);
    t.tied = d.tied;
    for (int r = 0; r < n; ++r) {
      const std::uint64_t b = part_bytes(d, L.part(d.role, r, d.rows, d.cols, d.dtype));
      t.rank_bytes.push_back(b);
      p.rank_bytes[static_cast<std::size_t>(r)] += b;
    }
    p.total_bytes += t.bytes;
    p.total_parameters += t.parameters;
    (strategy == TensorParallelStrategy::None ? p.replicated_bytes : p.parallel_bytes) += t.bytes;
    if (L.kv_copies > 1 && (d.role == WeightRole::Wk || d.role == WeightRole::Wv))
      p.kv_copy_bytes += t.bytes * static_cast<std::uint64_t>(L.kv_copies - 1);
    p.tensors.push_back(std::move(t));
  }
  p.parallel_percent = p.total_bytes > 0 ? 100.0 * static_cast<double>(p.parallel_bytes) / static_cast<double>(p.total_bytes) : 0;
  for (int r = 0; r < n; ++r) p.rank_buffer_bytes = std::max(p.rank_buffer_bytes, buffer_bytes_at(L, r));
  p.kv_bytes_per_1k_positions = 2ull * c.n_layers * static_cast<std::uint64_t>(L.kv_heads) * c.head_dim * 4 * 1000;

  p.allreduce_bytes_per_token = 2ull * c.n_layers * static_cast<std::uint64_t>(c.dim) * 4;
  p.gather_bytes_per_token = static_cast<std::uint64_t>(c.vocab_size) * 4;
  p.comm_bytes_per_token = n > 1 ? p.allreduce_bytes_per_token + p.gather_bytes_per_token : 0;
  // Reduce-scatter then all-gather: a rank sends (n-1)/n of the vector twice; in the logits
  // gather it sends its slice to each of the n-1 others.
  p.rank_sent_bytes_per_token =
      n > 1 ? 2 * p.allreduce_bytes_per_token * static_cast<std::uint64_t>(n - 1) / static_cast<std::uint64_t>(n) +
                  p.gather_bytes_per_token / static_cast<std::uint64_t>(n) * static_cast<std::uint64_t>(n - 1)
            : 0;

  p.memory_per_rank = o.memory_per_rank;
  p.memory_source = "--memory-per-rank";
  if (p.memory_per_rank == 0) p.memory_per_rank = machine_budget(p.memory_source);
  for (int w = 1; w <= kMaxWorldSize; ++w) {
    std::optional<TensorParallelLayout> lw;
    try {
      lw.emplace(TensorParallelLayout::make(c, w, down_dtype(ds)));
    } catch (const UsageError&) {
      continue;
    }
    p.valid_world_sizes.push_back(w);
    if (p.suggested_world_size != 0) continue;
    const auto rb = rank_bytes_at(c, ds, w);
    std::uint64_t worst = 0;
    for (int r = 0; r < w; ++r) worst = std::max(worst, rb[static_cast<std::size_t>(r)] + buffer_bytes_at(*lw, r));
    if (worst <= p.memory_per_rank) p.suggested_world_size = w;
  }

  auto& rec = p.recommendations;
  const double pct = p.parallel_percent;
  rec.emplace_back("parallelization", pct > 80   ? "highly recommended: most of the weights split across ranks"
                                      : pct > 50 ? "recommended, with significant memory savings per rank"
                                      : pct > 20 ? "moderate benefit; consider a pipeline/tensor hybrid"
                                                 : "low benefit; consider pipeline parallelism instead");
  if (p.suggested_world_size == 0)
    rec.emplace_back("world size", "no world size up to " + std::to_string(kMaxWorldSize) + " fits " + human(p.memory_per_rank) +
                                       " per rank (replicated tensors alone take " + human(p.replicated_bytes) + ")");
  else
    rec.emplace_back("world size", "the smallest world size that fits " + human(p.memory_per_rank) + " per rank (" +
                                       p.memory_source + ") is " + std::to_string(p.suggested_world_size) +
                                       (p.suggested_world_size > 4 ? "; consider several hosts (MPI ranks)" : ""));
  if (L.kv_copies > 1)
    rec.emplace_back("kv heads", "world size " + std::to_string(n) + " exceeds num_key_value_heads (" +
                                     std::to_string(c.n_kv_heads) + "): each KV head, its k/v projections and its cache are held by " +
                                     std::to_string(L.kv_copies) + " ranks");
  const auto uneven = [&](const char* what, std::int64_t dim, std::int64_t g) {
    const auto sizes = par::TensorParallelConfig{n, 0}.split_sizes(dim, g);
    if (std::adjacent_find(sizes.begin(), sizes.end(), std::not_equal_to<>()) == sizes.end()) return;
    std::string s;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (i) s += '/';
      s += std::to_string(sizes[i]);
    }
    rec.emplace_back(what, std::to_string(dim) + " splits unevenly (" + s + "); the largest rank sets the pace");
  };
  uneven("intermediate_size", c.hidden_dim, L.hidden_granule);
  uneven("vocab_size", c.vocab_size, L.vocab_granule);
  if (n > 1)
    rec.emplace_back("communication", "per token " + std::to_string(2 * c.n_layers) + " all-reduces of " + human(4ull * c.dim) +
                                          " and a logits gather of " + human(p.gather_bytes_per_token) + "; each rank sends about " +
                                          human(p.rank_sent_bytes_per_token) +
                                          " per token: keep ranks on one host's shared memory or a fast link");
  std::string valid;
  for (int w : p.valid_world_sizes) {
    if (!valid.empty()) valid += ", ";
    valid += std::to_string(w);
  }
  rec.emplace_back("valid world sizes", valid);
  return p;
}

}  // namespace

std::string TensorParallelPlan::text() const {
  std::string o;
  char line[512];
  std::snprintf(line, sizeof line, "tensor-parallel plan: %s (%s), world size %d\n", source.c_str(), format.c_str(), world_size);
  o += line;
  std::snprintf(line, sizeof line,
                "config: dim %d, hidden %d, layers %d, heads %d (KV %d, head_dim %d), vocab %d; per rank: %d query heads, "
                "%d KV head(s)%s\n\n",
                dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, q_heads_per_rank, kv_heads_per_rank,
                kv_copies > 1 ? (", each KV head on " + std::to_string(kv_copies) + " ranks").c_str() : "");
  o += line;
  o += "| tensor | role | strategy | shape | dtype | bytes | parameters | bytes per rank |\n";
  o += "|---|---|---|---|---|---:|---:|---:|\n";
  for (const TensorPlan& t : tensors) {
    std::string shape = "[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) {
      if (i) shape += ", ";
      shape += std::to_string(t.shape[i]);
    }
    shape += "]";
    std::string per;
    const bool same = std::adjacent_find(t.rank_bytes.begin(), t.rank_bytes.end(), std::not_equal_to<>()) == t.rank_bytes.end();
    if (same && !t.rank_bytes.empty()) per = std::to_string(t.rank_bytes[0]);
    else
      for (std::size_t i = 0; i < t.rank_bytes.size(); ++i) {
        if (i) per += " / ";
        per += std::to_string(t.rank_bytes[i]);
      }
    o += "| " + t.name + (t.tied ? " (tied to the embedding)" : "") + " | " + t.role + " | " + t.strategy + " | " + shape +
         " | " + t.dtype + " | " + std::to_string(t.bytes) + " | " + std::to_string(t.parameters) + " | " + per + " |\n";
  }
  std::snprintf(line, sizeof line,
                "\ntotal: %zu tensors, %llu parameters, %llu bytes (%s); parallel %llu bytes (%.1f%%), replicated %llu "
                "bytes\n",
                tensors.size(), static_cast<unsigned long long>(total_parameters), static_cast<unsigned long long>(total_bytes),
                human(total_bytes).c_str(), static_cast<unsigned long long>(parallel_bytes), parallel_percent,
                static_cast<unsigned long long>(replicated_bytes));
  o += line;
  std::uint64_t sum = 0;
  for (std::size_t r = 0; r < rank_bytes.size(); ++r) {
    std::snprintf(line, sizeof line, "rank %zu: %llu bytes of weights (%s) + %s of buffers; KV cache %s per 1000 positions\n", r,
                  static_cast<unsigned long long>(rank_bytes[r]), human(rank_bytes[r]).c_str(),
                  human(rank_buffer_bytes).c_str(), human(kv_bytes_per_1k_positions).c_str());
    o += line;
    sum += rank_bytes[r];
  }
  if (kv_copy_bytes > 0)
    std::snprintf(line, sizeof line, "all ranks: %llu bytes = total + replicated x %d + %llu bytes of KV heads held by %d ranks each\n",
                  static_cast<unsigned long long>(sum), world_size - 1, static_cast<unsigned long long>(kv_copy_bytes), kv_copies);
  else
    std::snprintf(line, sizeof line, "all ranks: %llu bytes = total + replicated x %d\n", static_cast<unsigned long long>(sum),
                  world_size - 1);
  o += line;
  std::snprintf(line, sizeof line,
                "communication per token: %llu bytes (all-reduces %llu + logits gather %llu); each rank sends about %llu\n",
                static_cast<unsigned long long>(comm_bytes_per_token), static_cast<unsigned long long>(world_size > 1 ? allreduce_bytes_per_token : 0),
                static_cast<unsigned long long>(world_size > 1 ? gather_bytes_per_token : 0),
                static_cast<unsigned long long>(rank_sent_bytes_per_token));
  o += line;
  std::snprintf(line, sizeof line, "memory budget per rank: %s (%s); suggested world size: %s\n", human(memory_per_rank).c_str(),
                memory_source.c_str(), suggested_world_size > 0 ? std::to_string(suggested_world_size).c_str() : "none fits");
  o += line;
  o += "\nrecommendations:\n";
  for (const auto& [k, v] : recommendations) o += "  - " + k + ": " + v + "\n";
  return o;
}

std::string TensorParallelPlan::json() const {
  nlohmann::ordered_json j;
  j["source"] = source;
  j["format"] = format;
  j["world_size"] = world_size;
  j["config"] = {{"dim", dim},         {"hidden_dim", hidden_dim}, {"n_layers", n_layers},   {"n_heads", n_heads},
                 {"n_kv_heads", n_kv_heads}, {"head_dim", head_dim}, {"vocab_size", vocab_size}};
  j["per_rank_heads"] = {{"query", q_heads_per_rank}, {"kv", kv_heads_per_rank}, {"kv_copies", kv_copies}};
  j["tensors"] = nlohmann::ordered_json::array();
  for (const TensorPlan& t : tensors)
    j["tensors"].push_back({{"name", t.name}, {"role", t.role}, {"strategy", t.strategy}, {"dtype", t.dtype}, {"shape", t.shape},
                            {"bytes", t.bytes}, {"parameters", t.parameters}, {"rank_bytes", t.rank_bytes}, {"tied", t.tied}});
  j["total_bytes"] = total_bytes;
  j["parallel_bytes"] = parallel_bytes;
  j["replicated_bytes"] = replicated_bytes;
  j["kv_copy_bytes"] = kv_copy_bytes;
  j["total_parameters"] = total_parameters;
  j["parallel_percent"] = parallel_percent;
  j["rank_bytes"] = rank_bytes;
  j["rank_buffer_bytes"] = rank_buffer_bytes;
  j["kv_bytes_per_1k_positions"] = kv_bytes_per_1k_positions;
  j["communication_per_token"] = {{"allreduce_bytes", allreduce_bytes_per_token}, {"gather_bytes", gather_bytes_per_token},
                                  {"total_bytes", comm_bytes_per_token}, {"rank_sent_bytes", rank_sent_bytes_per_token}};
  j["memory_per_rank"] = memory_per_rank;
  j["memory_source"] = memory_source;
  j["suggested_world_size"] = suggested_world_size;
  j["valid_world_sizes"] = valid_world_sizes;
  j["recommendations"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : recommendations) j["recommendations"][k] = v;
  return j.dump(2);
}

TensorParallelPlan plan_tensor_parallel(const std::string& path, const PlanOptions& options) {
  if (model::is_shard_dir(path))
    throw UsageError(path + " is a shard directory; plan the model it was made from");
  const model::LoadedModel m = model::load_model(path, "", true);
  return make_plan(m.source, m.format, m.config, describe_model(m), options);
}

TensorParallelPlan plan_tensor_parallel_from_config(const std::string& config_json, const PlanOptions& options,
                                                    const std::string& dtype) {
  const model::MistralConfig c = model::parse_hf_config(config_json);
  DType t;
  if (dtype == "BF16") t = DType::BF16;
  else if (dtype == "F16") t = DType::F16;
  else if (dtype == "F32") t = DType::F32;
  else throw UsageError("dtype " + dtype + " is not one of BF16, F16, F32");
  return make_plan(config_json, "config", c, describe_config(c, t), options);
}

// ---------------------------------------------------------------------------------------------
// weft shard

namespace {

nlohmann::ordered_json hf_config(const model::MistralConfig& c) {
  nlohmann::ordered_json j;
  const bool mistral = c.architecture == "mistral";
  j["architectures"] = {mistral ? "MistralForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = mistral ? "mistral" : "llama";
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.hidden_dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["rms_norm_eps"] = static_cast<double>(c.norm_eps);
  j["rope_theta"] = c.rope_theta;
  j["max_position_embeddings"] = std::max(1, c.max_position);
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["hidden_act"] = "silu";
  if (mistral) j["sliding_window"] = c.sliding_window > 0 ? nlohmann::ordered_json(c.sliding_window) : nlohmann::ordered_json();
  return j;
}

void write_text(const fs::path& p, const std::string& text) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out.flush()) throw InputError(tmp.string() + ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) throw InputError(p.string() + ": " + ec.message());
}

}  // namespace

ShardResult shard_model(const std::string& path, const ShardOptions& options) {
  if (options.output_dir.empty()) throw UsageError("shard: no output directory given");
  if (model::is_shard_dir(path)) throw UsageError(path + " is already a shard directory");
  const model::LoadedModel m = model::load_model(path, "", true);
  const std::vector<Desc> ds = describe_model(m);
  for (const Desc& d : ds)
    if (dtype_is_quantized(d.dtype))
      throw UsageError(path + ": tensor " + d.name + " is " + std::string(dtype_name(d.dtype)) +
                       "; weft shard writes safetensors, which hold F32, F16 and BF16 tensors only");
  const int n = options.world_size;
  const TensorParallelLayout L = TensorParallelLayout::make(m.config, n, down_dtype(ds));

  const fs::path dir(options.output_dir);
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) throw InputError(dir.string() + ": exists and is not a directory");
  fs::create_directories(dir, ec);
  if (ec) throw InputError(dir.string() + ": cannot create the directory: " + ec.message());
  // A shard directory being rewritten loses its manifest first, so a half-written one is never loaded.
  fs::remove(dir / "manifest.json", ec);

  ShardResult res;
  nlohmann::ordered_json manifest;
  manifest["format"] = "weft-tensor-parallel-shards";
  manifest["version"] = 1;
  manifest["world_size"] = n;
  manifest["source"] = m.source;
  manifest["source_format"] = m.format;
  manifest["config"] = "config.json";
  std::uint64_t total = 0;
  for (const Desc& d : ds) total += d.tied ? 0 : d.bytes();
  manifest["weight_dtype"] = std::string(dtype_name(m.weights.layers.empty() ? m.weights.embedding.dtype : m.weights.layers[0].wq.dtype));
  manifest["weight_bytes"] = total;
  manifest["ranks"] = nlohmann::ordered_json::array();
  manifest["tensors"] = nlohmann::ordered_json::array();

  char fname[64];
  for (int r = 0; r < n; ++r) {
    std::snprintf(fname, sizeof fname, "rank-%05d-of-%05d.safetensors", r, n);
    io::SafetensorsWriter w;
    std::vector<TensorParallelLayout::Part> parts;
    for (const Desc& d : ds) {
      const auto p = L.part(d.role, r, d.rows, d.cols, d.dtype);
      parts.push_back(p);
      w.add(d.name, d.dtype, d.ndim == 1 ? std::vector<std::int64_t>{p.cols} : std::vector<std::int64_t>{p.rows, p.cols});
    }
    w.set_metadata({{"format", "pt"}, {"weft_rank", std::to_string(r)}, {"weft_world_size", std::to_string(n)}});
    const fs::path file = dir / fname;
    std::uint64_t bytes = 0;
    w.write(file.string(), [&](std::size_t i, std::span<std::byte> out) {
      const Desc& d = ds[i];
      const auto& p = parts[i];
      const std::size_t src_row = dtype_bytes(d.dtype, static_cast<std::size_t>(d.cols));
      const std::size_t row = dtype_bytes(d.dtype, static_cast<std::size_t>(p.cols));
      const bool by_rows = L.cut(d.role, r).strategy != TensorParallelStrategy::RowParallel;
      const std::size_t row0 = by_rows ? static_cast<std::size_t>(p.offset) : 0;
      const std::size_t col_skip = by_rows ? 0 : dtype_bytes(d.dtype, static_cast<std::size_t>(p.offset));
      const auto* src = static_cast<const std::byte*>(d.data);
      for (std::int64_t k = 0; k < p.rows; ++k)
        std::memcpy(out.data() + static_cast<std::size_t>(k) * row, src + (row0 + static_cast<std::size_t>(k)) * src_row + col_skip, row);
      bytes += out.size();
    });
    res.files.push_back(file.string());
    res.file_bytes.push_back(static_cast<std::uint64_t>(fs::file_size(file)));
    manifest["ranks"].push_back({{"rank", r}, {"file", fname}, {"tensor_bytes", bytes}});
  }
  for (const Desc& d : ds) {
    nlohmann::ordered_json t = {{"name", d.name},
                                {"role", role_name(d.role)},
                                {"strategy", std::string(par::strategy_name(L.cut(d.role, 0).strategy))},
                                {"dtype", std::string(dtype_name(d.dtype))},
                                {"shape", d.ndim == 1 ? std::vector<std::int64_t>{d.cols} : std::vector<std::int64_t>{d.rows, d.cols}}};
    if (d.tied) t["tied_to"] = "model.embed_tokens.weight";
    t["parts"] = nlohmann::ordered_json::array();
    for (int r = 0; r < n; ++r) {
      const auto p = L.part(d.role, r, d.rows, d.cols, d.dtype);
      t["parts"].push_back({{"rank", r}, {"offset", p.offset},
                            {"shape", d.ndim == 1 ? std::vector<std::int64_t>{p.cols} : std::vector<std::int64_t>{p.rows, p.cols}}});
    }
    manifest["tensors"].push_back(std::move(t));
  }

  // The tokenizer: the one given, else the model directory's tokenizer.model.
  fs::path tok = options.tokenizer_path;
  if (tok.empty() && fs::is_directory(path, ec) && fs::exists(fs::path(path) / "tokenizer.model", ec))
    tok = fs::path(path) / "tokenizer.model";
  if (!tok.empty()) {
    if (!fs::is_regular_file(tok, ec)) throw InputError(tok.string() + ": no such tokenizer file");
    const std::string name = tok.extension() == ".bin" ? "tokenizer.bin" : "tokenizer.model";
    fs::copy_file(tok, dir / name, fs::copy_options::overwrite_existing, ec);
    if (ec) throw InputError((dir / name).string() + ": cannot copy the tokenizer: " + ec.message());
    manifest["tokenizer"] = name;
    res.tokenizer = (dir / name).string();
  } else {
    manifest["tokenizer"] = nullptr;
  }
  write_text(dir / "config.json", hf_config(m.config).dump(2) + "\n");
  write_text(dir / "manifest.json", manifest.dump(2) + "\n");  // last: its presence marks a complete directory
  res.manifest = (dir / "manifest.json").string();
  return res;
}

}  // namespace weft
