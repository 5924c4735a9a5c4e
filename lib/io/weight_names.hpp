#pragma once
// The one table of weight names: for each role in a Mistral/Llama checkpoint, its Hugging Face
// name, its GGUF name, its place in a llama2.c checkpoint, and whether a checkpoint must have it.
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace weft::io {

enum class WeightRole {
  TokenEmbedding,  // (vocab, dim)
  AttnNorm,        // per layer (dim)
  Wq,              // per layer (n_heads*head_dim, dim)
  Wk,              // per layer (n_kv_heads*head_dim, dim)
  Wv,              // per layer (n_kv_heads*head_dim, dim)
  Wo,              // per layer (dim, n_heads*head_dim)
  FfnNorm,         // per layer (dim)
  WGate,           // per layer (hidden, dim)
  WUp,             // per layer (hidden, dim)
  WDown,           // per layer (dim, hidden)
  OutputNorm,      // (dim)
  Output,          // (vocab, dim); optional: tied to the embedding when absent
};

struct WeightName {
  WeightRole role;
  bool per_layer;
  bool required;
  std::string_view hf;    // "{}" stands for the layer index
  std::string_view gguf;  // "{}" stands for the layer index
  int llama2c_order;      // position in a llama2.c checkpoint's tensor sequence
};

// Every role, in llama2.c file order.
std::span<const WeightName> weight_names() noexcept;

// The table row for a role.
const WeightName& weight_name(WeightRole role) noexcept;

// A per-layer pattern with its layer index filled in ("model.layers.3.mlp.up_proj.weight").
std::string layer_name(std::string_view pattern, int layer);

// Which role and layer a Hugging Face tensor name denotes; nullopt for names weft does not know.
struct ParsedName {
  WeightRole role;
  int layer;  // -1 for global tensors
};
std::optional<ParsedName> parse_hf_name(std::string_view name);

}  // namespace weft::io
