#pragma once
// llama2.c legacy checkpoints (.bin, "version 0" of its export.py), read from a memory map.
//
// Layout: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len),
// then float32 tensors in llama2.c order (see io/weight_names.hpp): token embedding (vocab, dim),
// per-layer stacks of attention norms, wq, wk, wv, wo, ffn norms, w1 (gate), w2 (down), w3 (up),
// the final norm, two unused RoPE tables of seq_len * head_size/2 floats each, and, only when
// vocab_size is negative, a separate classifier (vocab, dim). Q/K rows are stored in the
// interleaved-pair RoPE layout; this reader returns them as stored.
#include <array>
#include <cstddef>
#include <string>

#include "core/mapped_file.hpp"
#include "core/tensor.hpp"
#include "io/weight_names.hpp"

namespace weft::io {

struct Llama2cConfig {
  int dim = 0;
  int hidden_dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int vocab_size = 0;  // always positive here; the sign in the file is `shared_classifier`
  int seq_len = 0;
  bool shared_classifier = true;  // the output layer reuses the token embedding
};

// One mapped llama2.c checkpoint. Immutable after construction, so safe to share between threads;
// the views it returns point into the mapping and live as long as this object.
class Llama2cCheckpoint {
 public:
  // Maps `path` and validates its header and its exact size. Throws InputError naming the file:
  // non-positive or inconsistent header values, sizes that overflow, or a file that is shorter
  // ("truncated: expected N bytes, file has M") or longer than the header implies.
  explicit Llama2cCheckpoint(const std::string& path);

  // The header values.
  const Llama2cConfig& config() const noexcept { return config_; }
  // The path the file was opened with.
  const std::string& path() const noexcept { return file_.path(); }

  // The float32 view (into the mapping, no copy) for `role` in `layer`, or layer -1 for global roles.
  // Norms are 1-D (dim); matrices are (out, in) as in weight_names.hpp. Output is an empty view when
  // the classifier is shared. Throws UsageError when the layer does not fit the role.
  TensorView tensor(WeightRole role, int layer) const;

 private:
  MappedFile file_;
  Llama2cConfig config_;
  std::array<std::size_t, 12> offset_{};  // byte offset of each role's first tensor, by llama2c_order
};

}  // namespace weft::io
