#pragma once
// Mistral/Llama models in GGUF files: the config and tokenizer from the metadata, the metadata
// written back, and the Q/K row order that llama.cpp's converters use.
//
// GGUF metadata read and written (llama.cpp's key names; "llama." is the architecture prefix):
//   general.architecture                "llama" (also read: "mistral")
//   llama.embedding_length              dim
//   llama.block_count                   n_layers
//   llama.feed_forward_length           hidden_dim
//   llama.attention.head_count          n_heads
//   llama.attention.head_count_kv       n_kv_heads (default: n_heads)
//   llama.rope.dimension_count          head_dim (default: attention.key_length, else dim / n_heads)
//   llama.rope.freq_base                rope_theta (default 10000)
//   llama.attention.layer_norm_rms_epsilon  norm_eps
//   llama.context_length                max_position
//   llama.attention.sliding_window      sliding_window (optional; absent: none)
//   llama.vocab_size                    vocab_size (optional; else the token list, else token_embd rows)
//   tokenizer.ggml.*                    the SentencePiece ("llama") vocabulary
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "io/gguf.hpp"
#include "io/weight_names.hpp"
#include "model/config.hpp"
#include "tokenizer/tokenizer.hpp"

namespace weft::model {

// Reads the model shape from a GGUF's metadata and cross-checks it against the token_embd and
// output tensors. Throws InputError naming the file and key (and tensor, with expected and actual
// values) for a missing key, another architecture, or a contradiction.
MistralConfig config_from_gguf(const io::GgufFile& f);

// The metadata keys that fix a tensor's expected shape, for error messages
// ("llama.feed_forward_length, llama.embedding_length").
std::string gguf_shape_keys(io::WeightRole role);

// True when the file carries a vocabulary (tokenizer.ggml.tokens).
bool gguf_has_tokenizer(const io::GgufFile& f);

// Builds the tokenizer from tokenizer.ggml.{model ("llama"), tokens, scores, token_type,
// bos_token_id, eos_token_id, unknown_token_id, add_bos_token, add_space_prefix}; ids default to
// SentencePiece's 0 (unk), 1 (bos), 2 (eos). add_bos_token is type-checked but has no effect:
// weft's tokenizer leaves adding BOS to the caller (encode's add_bos), as for its other formats.
// Throws InputError naming the file and key for another tokenizer model or inconsistent arrays.
tok::Tokenizer tokenizer_from_gguf(const io::GgufFile& f);

// Adds the metadata describing config c (and the vocabulary of `tokenizer` when not null) to w,
// with general.architecture "llama". The inverse of config_from_gguf and tokenizer_from_gguf.
void write_gguf_metadata(io::GgufWriter& w, const MistralConfig& c, const tok::Tokenizer* tokenizer);

// Q/K row orders. HalfSplit is Hugging Face's rotate_half (weft's internal order: within a head,
// row i pairs with row i + head_dim/2); Interleaved is llama2.c's and llama.cpp's GGUF order
// (rows 2i and 2i+1 pair).
enum class RopeRowOrder { HalfSplit, Interleaved };

// For a matrix whose rows are heads of head_dim rows, the source row that lands in row `dst_row`
// when converting to order `to` (from the other order). Whole rows move, so this works for any
// dtype, quantized ones included.
std::int64_t rope_source_row(std::int64_t dst_row, int head_dim, RopeRowOrder to) noexcept;

// Copies `rows` rows of `row_bytes` bytes from src to dst reordered into order `to`. src and dst
// must not overlap; rows must be a multiple of head_dim (n_heads * head_dim).
void reorder_rope_rows(const std::byte* src, std::byte* dst, std::int64_t rows, std::size_t row_bytes, int head_dim,
                       RopeRowOrder to) noexcept;

}  // namespace weft::model
