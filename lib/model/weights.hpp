#pragma once
// MistralWeights: non-owning views of every weight, in the dtype the checkpoint stores, plus
// the storage that keeps them alive (a mapped file, buffers for tensors converted at load).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "io/weight_names.hpp"
#include "model/config.hpp"
#include "tokenizer/tokenizer.hpp"

namespace weft::model {

struct LayerWeights {
  TensorView attn_norm;  // (dim)
  TensorView wq;         // (n_heads*head_dim, dim), rows in HF rotate_half order
  TensorView wk;         // (n_kv_heads*head_dim, dim), rows in HF rotate_half order
  TensorView wv;         // (n_kv_heads*head_dim, dim)
  TensorView wo;         // (dim, n_heads*head_dim)
  TensorView ffn_norm;   // (dim)
  TensorView w_gate;     // (hidden_dim, dim)
  TensorView w_up;       // (hidden_dim, dim)
  TensorView w_down;     // (dim, hidden_dim)
};

struct MistralWeights {
  TensorView embedding;  // (vocab, dim)
  std::vector<LayerWeights> layers;
  TensorView final_norm;  // (dim)
  TensorView lm_head;     // (vocab, dim); the embedding when tied
};

// The view holding weight `role` of layer `layer` (ignored for global roles) in w: the one
// mapping from the weight-name table's roles to the struct's fields.
inline TensorView& weight_slot(MistralWeights& w, io::WeightRole role, int layer) {
  using io::WeightRole;
  const auto l = static_cast<std::size_t>(layer < 0 ? 0 : layer);
  switch (role) {
    case WeightRole::TokenEmbedding: return w.embedding;
    case WeightRole::OutputNorm: return w.final_norm;
    case WeightRole::Output: return w.lm_head;
    case WeightRole::AttnNorm: return w.layers[l].attn_norm;
    case WeightRole::Wq: return w.layers[l].wq;
    case WeightRole::Wk: return w.layers[l].wk;
    case WeightRole::Wv: return w.layers[l].wv;
    case WeightRole::Wo: return w.layers[l].wo;
    case WeightRole::FfnNorm: return w.layers[l].ffn_norm;
    case WeightRole::WGate: return w.layers[l].w_gate;
    case WeightRole::WUp: return w.layers[l].w_up;
    case WeightRole::WDown: return w.layers[l].w_down;
  }
  return w.embedding;
}
inline const TensorView& weight_slot(const MistralWeights& w, io::WeightRole role, int layer) {
  return weight_slot(const_cast<MistralWeights&>(w), role, layer);
}

// A loaded checkpoint: immutable, shared by every session that runs it.
struct LoadedModel {
  std::string source;  // the path it was loaded from
  std::string format;  // "safetensors", "gguf" or "llama2c"
  MistralConfig config;
  MistralWeights weights;
  std::shared_ptr<const tok::Tokenizer> tokenizer;  // null when the checkpoint has none
  std::shared_ptr<void> storage;  // owns the mappings and converted tensors the views point into
};

// Loads a Hugging Face directory (config.json + safetensors, tokenizer.model when present), a
// GGUF file (by its .gguf suffix or its magic; config and tokenizer from its metadata, weights in
// their stored dtype, quantized ones included; model/gguf_model.hpp) or a llama2.c .bin. tokenizer_path overrides or supplies the tokenizer (tokenizer.model or a
// llama2.c tokenizer.bin); empty means "whatever the checkpoint has". Throws InputError naming
// the file and tensor for anything missing, unknown or of the wrong shape. use_mmap false copies
// the weight matrices into anonymous huge-page memory (faster decode, slower load). repack stores
// the quantized matrices whose dtype the active kernels read interleaved (kernels::reads_interleaved)
// in that layout (TensorView::interleave; a copy, so they leave the mapping): faster decode. Code
// that reads weight bytes itself (quantize, plan, shard) loads without it.
LoadedModel load_model(const std::string& path, const std::string& tokenizer_path, bool use_mmap = true,
                       bool repack = false);

}  // namespace weft::model
