#pragma once
// Converting a checkpoint into a GGUF file with a chosen weight type (`weft quantize`).
#include <cstddef>
#include <functional>
#include <string>

namespace weft {

struct QuantizeOptions {
  // Weight type of the matrices: "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k", or the mix
  // "q4_k_m" (Q4_K, with Q6_K for output.weight and for attn_v and ffn_down in the first and last
  // eighth of the layers and in every third layer between them). Norms and other 1-D tensors stay
  // F32. A matrix whose rows are not a whole number of the type's blocks falls back to Q8_0 when
  // its rows are a multiple of 32 and to F16 otherwise (counted in QuantizeSummary::fallbacks).
  std::string type = "q8_0";
  // Tokenizer to embed when the input has none of its own (a llama2.c .bin needs one); empty:
  // the input's own tokenizer, if any.
  std::string tokenizer_path;
  // Called after each tensor with the source bytes converted so far and in all; may be empty.
  // Called on the converting thread.
  std::function<void(std::size_t done, std::size_t total)> progress;
  // Threads that convert the rows of each matrix; <= 0: one per available hardware thread. The
  // file is the same, byte for byte, whatever the number.
  int threads = 0;
};

struct QuantizeSummary {
  std::size_t bytes_in = 0;   // bytes of the input's weights, as stored
  std::size_t bytes_out = 0;  // size of the written GGUF file
  double seconds = 0;         // wall time of the whole conversion
  std::size_t tensors = 0;    // tensors written
  std::size_t fallbacks = 0;  // matrices written in a fallback type (see QuantizeOptions::type)
};

// Reads the checkpoint at `in` (a Hugging Face directory, a GGUF file or a llama2.c .bin) and
// writes `out` as a GGUF v3 file (llama.cpp's layout: metadata, tokenizer, q/k rows in the
// interleaved order) with the matrices converted to options.type. The output appears only when
// complete. Throws UsageError for an unknown type, InputError for an unreadable input or an
// unwritable output. Independent calls may run concurrently.
QuantizeSummary quantize_model(const std::string& in, const std::string& out, const QuantizeOptions& options);

}  // namespace weft
