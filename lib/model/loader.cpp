// Checkpoint loading: maps files, checks every tensor against the config, and converts only
// what must change (llama2.c's interleaved-RoPE q/k rows).
#include <cmath>
#include <cstring>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/aligned_buffer.hpp"
#include "core/mapped_file.hpp"
#include "core/quant.hpp"
#include "io/gguf.hpp"
#include "io/llama2c.hpp"
#include "io/safetensors.hpp"
#include "io/weight_names.hpp"
#include "kernels/kernels.hpp"
#include "model/gguf_model.hpp"
#include "model/weights.hpp"
#include "weft/error.hpp"

namespace weft::model {

namespace fs = std::filesystem;
using io::WeightRole;

namespace {

struct Storage {
  std::optional<io::SafetensorsSet> safetensors;
  std::optional<io::Llama2cCheckpoint> llama2c;
  std::optional<io::GgufFile> gguf;
  std::vector<AlignedBuffer<std::byte>> owned;
  struct Free {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  std::vector<std::unique_ptr<std::byte, Free>> anonymous;  // weights copied out of the mapping
};

// Copies a tensor into anonymous memory advised for transparent huge pages. A decode step
// streams every weight once; with 2 MiB pages it takes far fewer TLB misses than through the
// 4 KiB pages of a file mapping (measured on the 1.1B shape at 2 threads: 19.7 -> 23.2 GB/s).
// With interleave, a quantized matrix is stored in the kernels' 16-row layout instead
// (core/quant.hpp), the same number of bytes.
void copy_to_anonymous(TensorView& v, Storage& st, bool interleave = false) {
  auto* p = static_cast<std::byte*>(allocate_huge_pages(v.bytes()));
  if (interleave) {
    interleave_rows(v.dtype, v.data, v.rows, v.cols, p);
    v.interleave = kInterleaveRows;
  } else {
    std::memcpy(p, v.data, v.bytes());
  }
  v.data = p;
  st.anonymous.emplace_back(p);
}

// Whether a matrix pays to be stored interleaved: the active kernels read its dtype that way, and
// it has at least one whole group of rows.
bool wants_interleave(const TensorView& v) {
  return v.ndim == 2 && v.rows >= kInterleaveRows && interleavable(v.dtype) && kernels::reads_interleaved(v.dtype);
}

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::ostringstream o;
  o << '[';
  for (std::size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << ']';
  return o.str();
}

// The shape a role must have under config c.
std::vector<std::int64_t> expected_shape(const MistralConfig& c, WeightRole role) {
  switch (role) {
    case WeightRole::TokenEmbedding:
    case WeightRole::Output: return {c.vocab_size, c.dim};
    case WeightRole::AttnNorm:
    case WeightRole::FfnNorm:
    case WeightRole::OutputNorm: return {c.dim};
    case WeightRole::Wq: return {c.q_dim(), c.dim};
    case WeightRole::Wk:
    case WeightRole::Wv: return {c.kv_dim(), c.dim};
    case WeightRole::Wo: return {c.dim, c.q_dim()};
    case WeightRole::WGate:
    case WeightRole::WUp: return {c.hidden_dim, c.dim};
    case WeightRole::WDown: return {c.dim, c.hidden_dim};
  }
  return {};
}


TensorView view_of(const void* data, DType t, const std::vector<std::int64_t>& shape) {
  return shape.size() == 1 ? make_view_1d(data, t, shape[0]) : make_view_2d(data, t, shape[0], shape[1]);
}

// Norm weights are a few KB, so checking them at load costs nothing and catches the common
// corruption (NaN/Inf from a bad conversion) with the tensor's name; the rest is caught at run
// time by the check on the logits (api.cpp), since scanning gigabytes at load would not be cheap.
void check_finite_norm(const TensorView& v, const std::string& file, const std::string& name) {
  const auto* p = static_cast<const std::byte*>(v.data);
  for (std::int64_t i = 0; i < v.numel(); ++i) {
    float f = 0;
    if (v.dtype == DType::F32) {
      std::memcpy(&f, p + 4 * i, 4);
    } else {
      std::uint16_t h = 0;
      std::memcpy(&h, p + 2 * i, 2);
      f = v.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
    if (!std::isfinite(f))
      throw InputError(file + ": tensor " + name + " has a non-finite value (" + (std::isnan(f) ? "NaN" : "Inf") +
                       ") at index " + std::to_string(i) + "; the checkpoint is corrupt");
  }
}

bool is_norm(WeightRole role) {
  return role == WeightRole::AttnNorm || role == WeightRole::FfnNorm || role == WeightRole::OutputNorm;
}

// llama2.c (and llama.cpp's GGUF converter) order q/k rows so that adjacent pairs rotate;
// weft uses HF's rotate_half, where row i pairs with row i + head_dim/2.
// Whole rows move, so quantized rows (GGUF) work too.
TensorView unpermute_rope_rows(const TensorView& w, int n_heads, int head_dim, Storage& st) {
  const std::size_t rb = w.row_bytes();
  const std::int64_t rows = static_cast<std::int64_t>(n_heads) * head_dim;
  AlignedBuffer<std::byte> buf(rb * static_cast<std::size_t>(w.rows));
  reorder_rope_rows(static_cast<const std::byte*>(w.data), buf.data(), std::min(rows, w.rows), rb, head_dim,
                    RopeRowOrder::HalfSplit);
  TensorView out = w;
  out.data = buf.data();
  st.owned.push_back(std::move(buf));
  return out;
}

void load_safetensors_dir(const std::string& dir, LoadedModel& m, Storage& st) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(config_path)) throw InputError(dir + ": no config.json (expected a Hugging Face model directory)");
  m.config = parse_hf_config(config_path);
  const MistralConfig& c = m.config;
  st.safetensors.emplace(io::SafetensorsSet::open_directory(dir));
  const io::SafetensorsSet& set = *st.safetensors;
  // The layer table is sized from config.json: make sure the checkpoint has that many layers
  // before allocating it (an absurd num_hidden_layers would otherwise ask for terabytes).
  if (c.n_layers > 0) {
    const std::string last = io::layer_name(io::weight_name(io::WeightRole::Wq).hf, c.n_layers - 1);
    if (set.find(last) == nullptr)
      throw InputError(dir + ": config.json says num_hidden_layers = " + std::to_string(c.n_layers) + " but tensor " +
                       last + " is missing");
  }
  m.weights.layers.resize(static_cast<std::size_t>(c.n_layers));

  std::set<std::string> used;
  for (const auto& n : io::weight_names()) {
    const int layers = n.per_layer ? c.n_layers : 1;
    for (int l = 0; l < layers; ++l) {
      const std::string name = n.per_layer ? io::layer_name(n.hf, l) : std::string(n.hf);
      const io::SafetensorsEntry* e = set.find(name);
      if (e == nullptr) {
        if (n.required) throw InputError(dir + ": tensor " + name + " is missing");
        continue;
      }
      used.insert(name);
      const auto want = expected_shape(c, n.role);
      if (e->shape != want)
        throw InputError(set.file_of(name) + ": tensor " + name + " has shape " + shape_str(e->shape) + ", expected " +
                         shape_str(want) + " from config.json");
      weight_slot(m.weights, n.role, n.per_layer ? l : -1) = view_of(e->data.data(), e->dtype, e->shape);
      if (is_norm(n.role)) check_finite_norm(weight_slot(m.weights, n.role, n.per_layer ? l : -1), set.file_of(name), name);
    }
  }
  for (const std::string& name : set.names()) {
    if (used.count(name)) continue;
    if (name.ends_with(".rotary_emb.inv_freq")) continue;  // a cache some exporters save; weft computes it
    const std::string hint = name.ends_with(".bias") ? " (biases are not supported)" : "";
    throw InputError(set.file_of(name) + ": unknown tensor " + name + hint);
  }
  if (m.weights.lm_head.empty()) m.weights.lm_head = m.weights.embedding;  // tied (or config says so)
  m.format = "safetensors";

  const fs::path tok_path = fs::path(dir) / "tokenizer.model";
  if (fs::exists(tok_path))
    m.tokenizer = std::make_shared<const tok::Tokenizer>(tok::Tokenizer::from_sentencepiece_file(tok_path.string()));
}

void load_llama2c(const std::string& path, LoadedModel& m, Storage& st) {
  st.llama2c.emplace(path);
  const io::Llama2cCheckpoint& ck = *st.llama2c;
  const io::Llama2cConfig& h = ck.config();
  MistralConfig& c = m.config;
  c.architecture = "llama";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.vocab_size = h.vocab_size;
  c.norm_eps = 1e-5f;  // llama2.c's run.c constant
  c.rope_theta = 10000.0;
  c.sliding_window = 0;
  c.max_position = h.seq_len;
  c.tie_embeddings = h.shared_classifier;
  validate_config(c, path);
  m.weights.layers.resize(static_cast<std::size_t>(c.n_layers));
  for (const auto& n : io::weight_names()) {
    const int layers = n.per_layer ? c.n_layers : 1;
    for (int l = 0; l < layers; ++l) {
      TensorView v = ck.tensor(n.role, n.per_layer ? l : -1);
      if (n.role == WeightRole::Wq) v = unpermute_rope_rows(v, c.n_heads, c.head_dim, st);
      if (n.role == WeightRole::Wk) v = unpermute_rope_rows(v, c.n_kv_heads, c.head_dim, st);
      if (is_norm(n.role)) check_finite_norm(v, path, n.per_layer ? io::layer_name(n.hf, l) : std::string(n.hf));
      weight_slot(m.weights, n.role, n.per_layer ? l : -1) = v;
    }
  }
  if (m.weights.lm_head.empty()) m.weights.lm_head = m.weights.embedding;
  m.format = "llama2c";
}

// A GGUF file (llama.cpp's format): config and tokenizer from its metadata, weights as views in
// their stored dtype (quantized ones included), q/k rows back from llama.cpp's interleaved order.
void load_gguf(const std::string& path, bool want_tokenizer, LoadedModel& m, Storage& st) {
  st.gguf.emplace(path);
  const io::GgufFile& f = *st.gguf;
  m.config = config_from_gguf(f);
  const MistralConfig& c = m.config;
  m.weights.layers.resize(static_cast<std::size_t>(c.n_layers));
  std::set<std::string> used;
  for (const auto& n : io::weight_names()) {
    const int layers = n.per_layer ? c.n_layers : 1;
    for (int l = 0; l < layers; ++l) {
      const std::string name = n.per_layer ? io::layer_name(n.gguf, l) : std::string(n.gguf);
      const io::GgufTensor* t = f.find_tensor(name);
      if (t == nullptr) {
        if (n.required) throw InputError(path + ": tensor " + name + " is missing");
        continue;
      }
      used.insert(name);
      const auto want = expected_shape(c, n.role);
      if (t->shape != want)
        throw InputError(path + ": tensor " + name + " has shape " + shape_str(t->shape) + ", expected " +
                         shape_str(want) + " from the metadata (" + gguf_shape_keys(n.role) + ")");
      TensorView v = view_of(t->data.data(), t->dtype, t->shape);
      if (n.role == WeightRole::Wq) v = unpermute_rope_rows(v, c.n_heads, c.head_dim, st);
      if (n.role == WeightRole::Wk) v = unpermute_rope_rows(v, c.n_kv_heads, c.head_dim, st);
      if (is_norm(n.role)) {
        if (dtype_is_quantized(t->dtype))
          throw InputError(path + ": tensor " + name + " is " + std::string(dtype_name(t->dtype)) +
                           "; norm weights must be F32, F16 or BF16");
        check_finite_norm(v, path, name);
      }
      weight_slot(m.weights, n.role, n.per_layer ? l : -1) = v;
    }
  }
  for (const io::GgufTensor& t : f.tensors())
    if (!used.count(t.name)) throw InputError(path + ": unknown tensor " + t.name);
  if (m.weights.lm_head.empty()) m.weights.lm_head = m.weights.embedding;  // tied
  m.format = "gguf";
  if (want_tokenizer && gguf_has_tokenizer(f))
    m.tokenizer = std::make_shared<const tok::Tokenizer>(tokenizer_from_gguf(f));
}

// A GGUF by name, or by its first four bytes.
bool is_gguf_path(const std::string& path) {
  if (path.ends_with(".gguf")) return true;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace

LoadedModel load_model(const std::string& path, const std::string& tokenizer_path, bool use_mmap, bool repack) {
  LoadedModel m;
  m.source = path;
  auto st = std::make_shared<Storage>();
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(path + ": no such file or directory");
  if (fs::is_directory(path, ec)) {
    load_safetensors_dir(path, m, *st);
  } else if (is_gguf_path(path)) {
    load_gguf(path, tokenizer_path.empty(), m, *st);
  } else if (path.ends_with(".bin")) {
    load_llama2c(path, m, *st);
  } else {
    throw InputError(path + ": not a model (expected a Hugging Face directory, a .gguf or a llama2.c .bin)");
  }
  if (!tokenizer_path.empty()) {
    if (fs::is_directory(tokenizer_path, ec)) throw InputError(tokenizer_path + ": is a directory, expected a tokenizer file");
    m.tokenizer = std::make_shared<const tok::Tokenizer>(tokenizer_path.ends_with(".bin") ? tok::Tokenizer::from_llama2c_file(tokenizer_path)
                                                         : tok::Tokenizer::from_sentencepiece_file(tokenizer_path));
  }
  if (m.tokenizer && m.tokenizer->vocab_size() > m.config.vocab_size)
    throw InputError((tokenizer_path.empty() ? path : tokenizer_path) + ": tokenizer has " +
                     std::to_string(m.tokenizer->vocab_size()) + " tokens but the model's vocabulary is " +
                     std::to_string(m.config.vocab_size));
  // Without mmap every matrix is copied; with it only those that are interleaved (a copy anyway).
  const auto place = [&](TensorView& t, bool may_interleave) {
    const bool il = repack && may_interleave && wants_interleave(t);
    if (!use_mmap || il) copy_to_anonymous(t, *st, il);
  };
  for (auto& L : m.weights.layers)
    for (TensorView* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) place(*t, true);
  // The embedding is read one row per token, so it stays mapped unless it is also the lm_head;
  // then it stays in the file's layout, which embedding_row reads.
  const bool tied = m.weights.lm_head.data == m.weights.embedding.data;
  place(m.weights.lm_head, !tied);
  if (tied) m.weights.embedding = m.weights.lm_head;
  m.storage = std::move(st);
  return m;
}

}  // namespace weft::model
