#pragma once
// MistralConfig: the shape of a Mistral/Llama model, whatever file it came from.
#include <cstdint>
#include <string>

namespace weft::model {

struct MistralConfig {
  std::string architecture = "mistral";  // "mistral" or "llama"
  int dim = 0;                           // hidden_size
  int hidden_dim = 0;                    // intermediate_size (SwiGLU width)
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;                      // hidden_size / heads unless the checkpoint says otherwise
  int vocab_size = 0;
  float norm_eps = 1e-5f;
  double rope_theta = 10000.0;
  int sliding_window = 0;                // 0: every earlier token is visible
  int max_position = 0;                  // max_position_embeddings (context the model was trained for)
  bool tie_embeddings = false;           // lm_head shares the embedding matrix

  int q_dim() const noexcept { return n_heads * head_dim; }
  int kv_dim() const noexcept { return n_kv_heads * head_dim; }
};

// Reads a Hugging Face config.json (MistralForCausalLM or LlamaForCausalLM). Throws InputError
// naming the file and key for missing or wrong-typed keys and for options weft does not
// implement (rope scaling, biases, activations other than SiLU).
MistralConfig parse_hf_config(const std::string& path);

// Checks that the numbers are consistent (positive, heads divide, even head_dim). `source`
// names the file in the error message.
void validate_config(const MistralConfig& c, const std::string& source);

}  // namespace weft::model
