#include "model/gguf_model.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "weft/error.hpp"

namespace weft::model {

namespace {

constexpr const char* kTokens = "tokenizer.ggml.tokens";

[[noreturn]] void fail(const io::GgufFile& f, const std::string& what) { throw InputError(f.path() + ": " + what); }

// A required (or defaulted) positive count that fits weft's int fields.
int count_key(const io::GgufFile& f, const std::string& key, std::optional<int> fallback = std::nullopt) {
  std::optional<std::uint32_t> v = f.try_u32(key);
  if (!v) {
    if (fallback) return *fallback;
    fail(f, "required key \"" + key + "\" is missing");
  }
  if (*v == 0 || *v > (1u << 30)) fail(f, "key \"" + key + "\" = " + std::to_string(*v) + " is out of range (1 to 2^30)");
  return static_cast<int>(*v);
}

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

MistralConfig config_from_gguf(const io::GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama" && arch != "mistral")
    fail(f, "key \"general.architecture\" is \"" + arch + "\"; weft runs \"llama\" (and \"mistral\") models");
  const std::string p = arch + ".";
  MistralConfig c;
  c.dim = count_key(f, p + "embedding_length");
  c.n_layers = count_key(f, p + "block_count");
  c.hidden_dim = count_key(f, p + "feed_forward_length");
  c.n_heads = count_key(f, p + "attention.head_count");
  c.n_kv_heads = count_key(f, p + "attention.head_count_kv", c.n_heads);
  const int key_length = count_key(f, p + "attention.key_length", c.dim / c.n_heads > 0 ? c.dim / c.n_heads : 1);
  const int value_length = count_key(f, p + "attention.value_length", key_length);
  if (value_length != key_length)
    fail(f, "key \"" + p + "attention.value_length\" = " + std::to_string(value_length) + " differs from \"" + p +
                "attention.key_length\" = " + std::to_string(key_length) + " (not supported)");
  c.head_dim = key_length;
  if (const auto rot = f.try_u32(p + "rope.dimension_count"); rot && static_cast<int>(*rot) != c.head_dim)
    fail(f, "key \"" + p + "rope.dimension_count\" = " + std::to_string(*rot) + " but the head size is " +
                std::to_string(c.head_dim) + " (partial rotary embeddings are not supported)");
  if (const auto scaling = f.try_string(p + "rope.scaling.type"); scaling && *scaling != "none")
    fail(f, "key \"" + p + "rope.scaling.type\" = \"" + *scaling + "\" is not supported (weft implements plain RoPE)");
  c.norm_eps = f.get_f32(p + "attention.layer_norm_rms_epsilon");
  c.rope_theta = f.try_f32(p + "rope.freq_base").value_or(10000.0f);
  if (!(c.norm_eps > 0) || !std::isfinite(c.norm_eps))
    fail(f, "key \"" + p + "attention.layer_norm_rms_epsilon\" must be positive and finite, got " + std::to_string(c.norm_eps));
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta))
    fail(f, "key \"" + p + "rope.freq_base\" must be positive and finite, got " + std::to_string(c.rope_theta));
  c.max_position = count_key(f, p + "context_length");
  if (const auto w = f.try_u32(p + "attention.sliding_window")) {
    if (*w > (1u << 30)) fail(f, "key \"" + p + "attention.sliding_window\" = " + std::to_string(*w) + " is out of range");
    c.sliding_window = static_cast<int>(*w);
  }
  c.architecture = arch == "mistral" || c.sliding_window > 0 ? "mistral" : "llama";

  // The vocabulary: the token list, else llama.vocab_size, else the embedding's rows.
  const io::GgufTensor* embd = f.find_tensor(io::weight_name(io::WeightRole::TokenEmbedding).gguf);
  const io::GgufTensor* out = f.find_tensor(io::weight_name(io::WeightRole::Output).gguf);
  if (embd == nullptr) fail(f, "tensor token_embd.weight is missing");
  if (embd->shape.size() != 2)
    fail(f, "tensor token_embd.weight has shape " + shape_text(embd->shape) + ", expected 2 dimensions [vocab, " +
                p + "embedding_length]");
  std::string vocab_key;
  if (const io::GgufValue* tokens = f.find(kTokens); tokens != nullptr && tokens->type() == io::GgufType::Array) {
    if (tokens->array_size() == 0 || tokens->array_size() > (1u << 30))
      fail(f, std::string("key \"") + kTokens + "\" has " + std::to_string(tokens->array_size()) + " tokens");
    c.vocab_size = static_cast<int>(tokens->array_size());
    vocab_key = std::string("the length of ") + kTokens;
    if (const auto v = f.try_u32(p + "vocab_size"); v && static_cast<int>(*v) != c.vocab_size)
      fail(f, "key \"" + p + "vocab_size\" = " + std::to_string(*v) + " but \"" + kTokens + "\" has " +
                  std::to_string(c.vocab_size) + " tokens");
  } else if (f.has(p + "vocab_size")) {
    c.vocab_size = count_key(f, p + "vocab_size");
    vocab_key = p + "vocab_size";
  } else {
    if (embd->shape[0] > (1 << 30)) fail(f, "tensor token_embd.weight has " + std::to_string(embd->shape[0]) + " rows");
    c.vocab_size = static_cast<int>(embd->shape[0]);
    vocab_key = "the rows of token_embd.weight";
  }
  for (const io::GgufTensor* t : {embd, out}) {
    if (t == nullptr) continue;
    const std::vector<std::int64_t> want = {c.vocab_size, c.dim};
    if (t->shape != want)
      fail(f, "tensor " + t->name + " has shape " + shape_text(t->shape) + " but the metadata implies " +
                  shape_text(want) + " (vocab from " + vocab_key + ", \"" + p + "embedding_length\" = " +
                  std::to_string(c.dim) + ")");
  }
  c.tie_embeddings = out == nullptr;

  // The layer count against the blk.N tensors, before anything is sized by it.
  long layers_in_file = 0;
  for (const io::GgufTensor& t : f.tensors()) {
    if (!t.name.starts_with("blk.")) continue;
    long n = -1;
    const char* first = t.name.data() + 4;
    const auto [ptr, ec] = std::from_chars(first, t.name.data() + t.name.size(), n);
    if (ec == std::errc{} && ptr != first && *ptr == '.' && n >= 0 && n < (1L << 30))
      layers_in_file = std::max(layers_in_file, n + 1);
  }
  if (layers_in_file != c.n_layers)
    fail(f, "key \"" + p + "block_count\" = " + std::to_string(c.n_layers) + " but the file has tensors for " +
                std::to_string(layers_in_file) + " layers (blk.0 to blk." + std::to_string(layers_in_file - 1) + ")");
  validate_config(c, f.path());
  return c;
}

std::string gguf_shape_keys(io::WeightRole role) {
  using R = io::WeightRole;
  const std::string dim = "llama.embedding_length", heads = "llama.attention.head_count",
                    kv = "llama.attention.head_count_kv", hd = "llama.rope.dimension_count",
                    ff = "llama.feed_forward_length";
  switch (role) {
    case R::TokenEmbedding:
    case R::Output: return "the vocabulary size, " + dim;
    case R::AttnNorm:
    case R::FfnNorm:
    case R::OutputNorm: return dim;
    case R::Wq: return heads + " * " + hd + ", " + dim;
    case R::Wk:
    case R::Wv: return kv + " * " + hd + ", " + dim;
    case R::Wo: return dim + ", " + heads + " * " + hd;
    case R::WGate:
    case R::WUp: return ff + ", " + dim;
    case R::WDown: return dim + ", " + ff;
  }
  return dim;
}

bool gguf_has_tokenizer(const io::GgufFile& f) { return f.has(kTokens); }

tok::Tokenizer tokenizer_from_gguf(const io::GgufFile& f) {
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "llama")
    fail(f, "key \"tokenizer.ggml.model\" is \"" + model +
                "\"; weft reads SentencePiece vocabularies (\"llama\"), not this one");
  const std::vector<std::string> tokens = f.get_string_array(kTokens);
  const std::size_t n = tokens.size();
  if (n == 0) fail(f, std::string("key \"") + kTokens + "\" is empty");
  const auto scores = f.try_f32_array("tokenizer.ggml.scores");
  const auto types = f.try_i32_array("tokenizer.ggml.token_type");
  if (scores && scores->size() != n)
    fail(f, "key \"tokenizer.ggml.scores\" has " + std::to_string(scores->size()) + " entries but \"" + kTokens +
                "\" has " + std::to_string(n));
  if (types && types->size() != n)
    fail(f, "key \"tokenizer.ggml.token_type\" has " + std::to_string(types->size()) + " entries but \"" + kTokens +
                "\" has " + std::to_string(n));
  std::vector<tok::Piece> pieces(n);
  for (std::size_t i = 0; i < n; ++i) {
    pieces[i].text = tokens[i];
    pieces[i].score = scores ? (*scores)[i] : 0.0f;
    const int type = types ? (*types)[i] : 1;
    if (type < 1 || type > 6)
      fail(f, "key \"tokenizer.ggml.token_type\" element " + std::to_string(i) + " is " + std::to_string(type) +
                  " (expected 1 to 6: normal, unknown, control, user-defined, unused, byte)");
    pieces[i].type = static_cast<tok::PieceType>(type);
  }
  const auto id = [&](const char* key, std::int64_t fallback) -> int {
    const auto v = f.try_u32(key);
    if (!v) return static_cast<int>(fallback);
    if (*v >= n) fail(f, std::string("key \"") + key + "\" = " + std::to_string(*v) + " is not a token id (" +
                             std::to_string(n) + " tokens)");
    return static_cast<int>(*v);
  };
  const int unk = id("tokenizer.ggml.unknown_token_id", 0);
  const int bos = id("tokenizer.ggml.bos_token_id", n > 1 ? 1 : -1);
  const int eos = id("tokenizer.ggml.eos_token_id", n > 2 ? 2 : -1);
  (void)f.try_bool("tokenizer.ggml.add_bos_token");  // type-checked only; see the header
  const bool add_space_prefix = f.try_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  return tok::Tokenizer::from_pieces(std::move(pieces), bos, eos, unk, add_space_prefix, f.path());
}

void write_gguf_metadata(io::GgufWriter& w, const MistralConfig& c, const tok::Tokenizer* tokenizer) {
  const std::string p = "llama.";
  w.add_string("general.architecture", "llama");
  w.add_u32(p + "vocab_size", static_cast<std::uint32_t>(c.vocab_size));
  w.add_u32(p + "context_length", static_cast<std::uint32_t>(c.max_position));
  w.add_u32(p + "embedding_length", static_cast<std::uint32_t>(c.dim));
  w.add_u32(p + "block_count", static_cast<std::uint32_t>(c.n_layers));
  w.add_u32(p + "feed_forward_length", static_cast<std::uint32_t>(c.hidden_dim));
  w.add_u32(p + "rope.dimension_count", static_cast<std::uint32_t>(c.head_dim));
  w.add_u32(p + "attention.head_count", static_cast<std::uint32_t>(c.n_heads));
  w.add_u32(p + "attention.head_count_kv", static_cast<std::uint32_t>(c.n_kv_heads));
  if (c.head_dim != c.dim / c.n_heads) {
    w.add_u32(p + "attention.key_length", static_cast<std::uint32_t>(c.head_dim));
    w.add_u32(p + "attention.value_length", static_cast<std::uint32_t>(c.head_dim));
  }
  w.add_f32(p + "rope.freq_base", static_cast<float>(c.rope_theta));
  w.add_f32(p + "attention.layer_norm_rms_epsilon", c.norm_eps);
  if (c.sliding_window > 0) w.add_u32(p + "attention.sliding_window", static_cast<std::uint32_t>(c.sliding_window));
  if (tokenizer == nullptr) return;

  const auto& pieces = tokenizer->pieces();
  std::vector<std::string> texts;
  std::vector<float> scores;
  std::vector<std::int32_t> types;
  texts.reserve(pieces.size());
  scores.reserve(pieces.size());
  types.reserve(pieces.size());
  for (const tok::Piece& piece : pieces) {
    texts.push_back(piece.text);
    scores.push_back(piece.score);
    types.push_back(static_cast<std::int32_t>(piece.type));
  }
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_string_array(kTokens, texts);
  w.add_f32_array("tokenizer.ggml.scores", scores);
  w.add_i32_array("tokenizer.ggml.token_type", types);
  if (tokenizer->bos_id() >= 0) w.add_u32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(tokenizer->bos_id()));
  if (tokenizer->eos_id() >= 0) w.add_u32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(tokenizer->eos_id()));
  w.add_u32("tokenizer.ggml.unknown_token_id", static_cast<std::uint32_t>(tokenizer->unk_id()));
  w.add_bool("tokenizer.ggml.add_bos_token", tokenizer->bos_id() >= 0);
  w.add_bool("tokenizer.ggml.add_eos_token", false);
  w.add_bool("tokenizer.ggml.add_space_prefix", tokenizer->add_dummy_prefix());
}

std::int64_t rope_source_row(std::int64_t dst_row, int head_dim, RopeRowOrder to) noexcept {
  const std::int64_t base = dst_row / head_dim * head_dim, i = dst_row % head_dim, half = head_dim / 2;
  if (to == RopeRowOrder::Interleaved) return base + (i % 2 == 0 ? i / 2 : half + i / 2);
  return base + (i < half ? 2 * i : 2 * (i - half) + 1);
}

void reorder_rope_rows(const std::byte* src, std::byte* dst, std::int64_t rows, std::size_t row_bytes, int head_dim,
                       RopeRowOrder to) noexcept {
  for (std::int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + static_cast<std::size_t>(r) * row_bytes,
                src + static_cast<std::size_t>(rope_source_row(r, head_dim, to)) * row_bytes, row_bytes);
}

}  // namespace weft::model
