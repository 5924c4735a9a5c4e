#include "model/config.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/mapped_file.hpp"
#include "weft/error.hpp"

namespace weft::model {

namespace {
using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) { throw InputError(path + ": " + what); }

int get_int(const json& j, const std::string& path, const char* key) {
  if (!j.contains(key)) fail(path, std::string("missing key \"") + key + "\"");
  const json& v = j[key];
  if (!v.is_number_integer()) fail(path, std::string("\"") + key + "\" must be an integer, got " + v.dump());
  const auto x = v.get<std::int64_t>();
  if (x <= 0 || x > (1LL << 30)) fail(path, std::string("\"") + key + "\" = " + std::to_string(x) + " is out of range");
  return static_cast<int>(x);
}

double get_number(const json& j, const std::string& path, const char* key, double fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) fail(path, std::string("\"") + key + "\" must be a number, got " + j[key].dump());
  return j[key].get<double>();
}

bool get_bool(const json& j, const std::string& path, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) fail(path, std::string("\"") + key + "\" must be true or false, got " + j[key].dump());
  return j[key].get<bool>();
}
}  // namespace

MistralConfig parse_hf_config(const std::string& path) {
  const std::string text = read_text_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers such as 1e400
    fail(path, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(path, "expected a JSON object at the top level");

  MistralConfig c;
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    arch = j["architectures"][0].get<std::string>();
  const std::string model_type = j.contains("model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>() : "";
  if (arch == "MistralForCausalLM" || (arch.empty() && model_type == "mistral")) {
    c.architecture = "mistral";
  } else if (arch == "LlamaForCausalLM" || (arch.empty() && model_type == "llama")) {
    c.architecture = "llama";
  } else {
    fail(path, "unsupported architecture \"" + (arch.empty() ? model_type : arch) +
                   "\" (weft runs MistralForCausalLM and LlamaForCausalLM)");
  }

  c.dim = get_int(j, path, "hidden_size");
  c.hidden_dim = get_int(j, path, "intermediate_size");
  c.n_layers = get_int(j, path, "num_hidden_layers");
  c.n_heads = get_int(j, path, "num_attention_heads");
  c.n_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                     ? get_int(j, path, "num_key_value_heads")
                     : c.n_heads;
  c.vocab_size = get_int(j, path, "vocab_size");
  c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null() ? get_int(j, path, "head_dim")
                                                                   : (c.n_heads > 0 ? c.dim / c.n_heads : 0);
  c.norm_eps = static_cast<float>(get_number(j, path, "rms_norm_eps", 1e-6));
  c.rope_theta = get_number(j, path, "rope_theta", 10000.0);
  c.max_position = j.contains("max_position_embeddings") ? get_int(j, path, "max_position_embeddings") : 4096;
  c.tie_embeddings = get_bool(j, path, "tie_word_embeddings", false);

  // Mistral: a missing key means the 4096 window of v0.1; an explicit null means no window.
  if (c.architecture == "mistral") {
    if (!j.contains("sliding_window")) c.sliding_window = 4096;
    else if (j["sliding_window"].is_null()) c.sliding_window = 0;
    else c.sliding_window = get_int(j, path, "sliding_window");
  }

  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    fail(path, "rope_scaling " + j["rope_scaling"].dump() + " is not supported (weft implements plain RoPE)");
  for (const char* key : {"attention_bias", "mlp_bias"})
    if (get_bool(j, path, key, false)) fail(path, std::string("\"") + key + "\": true is not supported (Mistral has no biases)");
  for (const char* key : {"hidden_act", "hidden_activation"}) {
    if (j.contains(key) && !(j[key].is_string() && j[key].get<std::string>() == "silu"))
      fail(path, std::string("\"") + key + "\" = " + j[key].dump() + " is not supported (weft implements SiLU)");
  }
  // rms_norm_eps is stored as float: 1e300 would become Inf and silently zero every activation.
  if (!(c.norm_eps > 0) || !std::isfinite(c.norm_eps) || !(c.rope_theta > 0) || !std::isfinite(c.rope_theta))
    fail(path, "rms_norm_eps and rope_theta must be positive and finite (rms_norm_eps as a float), got " +
                   j.value("rms_norm_eps", json()).dump() + " and " + j.value("rope_theta", json()).dump());
  validate_config(c, path);
  return c;
}

void validate_config(const MistralConfig& c, const std::string& source) {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) fail(source, what);
  };
  need(c.dim > 0 && c.hidden_dim > 0 && c.n_layers > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.vocab_size > 0,
       "model dimensions must be positive");
  need(c.n_heads % c.n_kv_heads == 0, "num_attention_heads (" + std::to_string(c.n_heads) +
                                           ") is not divisible by num_key_value_heads (" + std::to_string(c.n_kv_heads) + ")");
  need(c.head_dim > 0 && c.head_dim % 2 == 0, "head_dim (" + std::to_string(c.head_dim) + ") must be positive and even for RoPE");
  // Each key is capped at 2^30, but q_dim() and kv_dim() multiply two of them as int.
  need(static_cast<std::int64_t>(c.n_heads) * c.head_dim <= (1 << 30),
       "num_attention_heads * head_dim (" + std::to_string(c.n_heads) + " * " + std::to_string(c.head_dim) +
           ") is out of range");
  need(c.sliding_window >= 0, "sliding_window must not be negative");
}

}  // namespace weft::model
