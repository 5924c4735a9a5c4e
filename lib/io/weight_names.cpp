#include "io/weight_names.hpp"

#include <array>
#include <charconv>

namespace weft::io {

namespace {
constexpr std::array kNames = {
    WeightName{WeightRole::TokenEmbedding, false, true, "model.embed_tokens.weight", "token_embd.weight", 0},
    WeightName{WeightRole::AttnNorm, true, true, "model.layers.{}.input_layernorm.weight", "blk.{}.attn_norm.weight", 1},
    WeightName{WeightRole::Wq, true, true, "model.layers.{}.self_attn.q_proj.weight", "blk.{}.attn_q.weight", 2},
    WeightName{WeightRole::Wk, true, true, "model.layers.{}.self_attn.k_proj.weight", "blk.{}.attn_k.weight", 3},
    WeightName{WeightRole::Wv, true, true, "model.layers.{}.self_attn.v_proj.weight", "blk.{}.attn_v.weight", 4},
    WeightName{WeightRole::Wo, true, true, "model.layers.{}.self_attn.o_proj.weight", "blk.{}.attn_output.weight", 5},
    WeightName{WeightRole::FfnNorm, true, true, "model.layers.{}.post_attention_layernorm.weight", "blk.{}.ffn_norm.weight", 6},
    // llama2.c stores w1 (gate), w2 (down), w3 (up) in that order.
    WeightName{WeightRole::WGate, true, true, "model.layers.{}.mlp.gate_proj.weight", "blk.{}.ffn_gate.weight", 7},
    WeightName{WeightRole::WDown, true, true, "model.layers.{}.mlp.down_proj.weight", "blk.{}.ffn_down.weight", 8},
    WeightName{WeightRole::WUp, true, true, "model.layers.{}.mlp.up_proj.weight", "blk.{}.ffn_up.weight", 9},
    WeightName{WeightRole::OutputNorm, false, true, "model.norm.weight", "output_norm.weight", 10},
    WeightName{WeightRole::Output, false, false, "lm_head.weight", "output.weight", 11},
};
}  // namespace

std::span<const WeightName> weight_names() noexcept { return kNames; }

const WeightName& weight_name(WeightRole role) noexcept {
  for (const auto& n : kNames)
    if (n.role == role) return n;
  return kNames[0];  // unreachable: every role is in the table
}

std::string layer_name(std::string_view pattern, int layer) {
  std::string out(pattern);
  if (const auto pos = out.find("{}"); pos != std::string::npos) out.replace(pos, 2, std::to_string(layer));
  return out;
}

std::optional<ParsedName> parse_hf_name(std::string_view name) {
  for (const auto& n : kNames) {
    if (!n.per_layer) {
      if (name == n.hf) return ParsedName{n.role, -1};
      continue;
    }
    const auto brace = n.hf.find("{}");
    const std::string_view prefix = n.hf.substr(0, brace), suffix = n.hf.substr(brace + 2);
    if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) || !name.ends_with(suffix))
      continue;
    const std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    int layer = -1;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), layer);
    if (ec == std::errc{} && ptr == digits.data() + digits.size() && layer >= 0) return ParsedName{n.role, layer};
  }
  return std::nullopt;
}

}  // namespace weft::io
