// config.json parsing: the keys weft reads, their defaults, and clear errors for the rest.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "model/config.hpp"
#include "testing.hpp"
#include "weft/error.hpp"

using namespace weft;
namespace fs = std::filesystem;

namespace {
struct TempConfig {
  fs::path dir = fs::temp_directory_path() / ("weft_config_test_" + std::to_string(::getpid()));
  TempConfig() { fs::create_directories(dir); }
  ~TempConfig() { fs::remove_all(dir); }
  std::string write(const std::string& text) {
    const fs::path p = dir / "config.json";
    std::ofstream(p) << text;
    return p.string();
  }
};

const char* kMistral = R"({"architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 160,
  "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2, "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0, "sliding_window": 8, "max_position_embeddings": 256, "vocab_size": 512,
  "tie_word_embeddings": false, "hidden_act": "silu")";

std::string with(const std::string& extra) { return std::string(kMistral) + extra + "}"; }

// kMistral with one piece of text replaced (which must be there), closed.
std::string replaced(const std::string& from, const std::string& to) {
  std::string s = kMistral;
  const auto pos = s.find(from);
  REQUIRE(pos != std::string::npos);
  return s.replace(pos, from.size(), to) + "}";
}
}  // namespace

TEST_CASE("a Mistral config reads every key") {
  TempConfig t;
  const auto c = model::parse_hf_config(t.write(with("")));
  CHECK(c.architecture == "mistral");
  CHECK(c.dim == 64);
  CHECK(c.hidden_dim == 160);
  CHECK(c.n_layers == 3);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 2);
  CHECK(c.head_dim == 8);
  CHECK(c.vocab_size == 512);
  CHECK(c.sliding_window == 8);
  CHECK(c.max_position == 256);
  CHECK(c.norm_eps == doctest::Approx(1e-5));
  CHECK_FALSE(c.tie_embeddings);
}

TEST_CASE("sliding_window: missing means 4096 for Mistral, null means none; head_dim when present") {
  TempConfig t;
  std::string text = kMistral;
  text.replace(text.find("\"sliding_window\": 8, "), std::string("\"sliding_window\": 8, ").size(), "");
  CHECK(model::parse_hf_config(t.write(text + "}")).sliding_window == 4096);
  CHECK(model::parse_hf_config(t.write(with(R"(, "sliding_window_x": 1)"))).sliding_window == 8);
  text = kMistral;
  text.replace(text.find("\"sliding_window\": 8"), std::string("\"sliding_window\": 8").size(), "\"sliding_window\": null");
  CHECK(model::parse_hf_config(t.write(text + "}")).sliding_window == 0);
  text = kMistral;
  text.replace(text.find("\"num_attention_heads\": 8"), std::string("\"num_attention_heads\": 8").size(),
               "\"num_attention_heads\": 8, \"head_dim\": 16");
  CHECK(model::parse_hf_config(t.write(text + "}")).head_dim == 16);
}

TEST_CASE("a Llama config has no window and may omit num_key_value_heads") {
  TempConfig t;
  const auto c = model::parse_hf_config(t.write(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100,
    "tie_word_embeddings": true})"));
  CHECK(c.architecture == "llama");
  CHECK(c.sliding_window == 0);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.tie_embeddings);
}

TEST_CASE("bad configs are InputErrors naming the file and key") {
  TempConfig t;
  const std::pair<std::string, std::string> cases[] = {
      {"[1, 2]", "expected a JSON object"},
      {"{not json", "not valid JSON"},
      {"", "not valid JSON"},
      {with(R"(, "rope_scaling": {"type": "linear", "factor": 2.0})"), "rope_scaling"},
      {with(R"(, "attention_bias": true)"), "attention_bias"},
      {with(R"(, "mlp_bias": true)"), "mlp_bias"},
      {replaced("\"silu\"", "\"gelu\""), "hidden_act"},
      {replaced("MistralForCausalLM", "GPT2LMHeadModel"),
       "unsupported architecture \"GPT2LMHeadModel\""},
      {replaced("\"hidden_size\": 64", "\"hidden_size\": \"64\""),
       "\"hidden_size\" must be an integer"},
      {replaced("\"hidden_size\": 64", "\"hidden_size\": -64"),
       "\"hidden_size\" = -64 is out of range"},
      {replaced("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
       "not divisible by num_key_value_heads (3)"},
      {replaced("\"vocab_size\": 512,", ""),
       "missing key \"vocab_size\""},
  };
  for (const auto& [text, message] : cases) {
    CAPTURE(text);
    const std::string path = t.write(text);
    CHECK_THROWS_WITH_AS(model::parse_hf_config(path), doctest::Contains(message.c_str()), InputError);
    CHECK_THROWS_WITH_AS(model::parse_hf_config(path), doctest::Contains(path.c_str()), InputError);
  }
  CHECK_THROWS_WITH_AS(model::parse_hf_config((t.dir / "absent.json").string()), doctest::Contains("absent.json"), InputError);
}

TEST_CASE("fuzz_config findings stay fixed") {
  TempConfig t;
  // A number JSON can spell but a double cannot hold: nlohmann throws out_of_range, not
  // parse_error, which used to escape as a bare library exception without the file's name.
  // (Minimized from the crashing input; see tests/fuzz/README.md.)
  for (const std::string& text : {std::string(R"({"num_hidden_layers": 11e400})"), with(R"(, "rope_theta": -1e400)")}) {
    CAPTURE(text);
    const std::string path = t.write(text);
    CHECK_THROWS_WITH_AS(model::parse_hf_config(path), doctest::Contains("not valid JSON"), InputError);
    CHECK_THROWS_WITH_AS(model::parse_hf_config(path), doctest::Contains(path.c_str()), InputError);
  }
  // Heads and head_dim are each in range but their product overflowed int in q_dim() (UBSan,
  // found by review and reproduced with fuzz_config).
  const std::string heads = t.write(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 64,
    "num_hidden_layers": 1, "num_attention_heads": 65536, "head_dim": 65536, "vocab_size": 8})");
  CHECK_THROWS_WITH_AS(model::parse_hf_config(heads), doctest::Contains("num_attention_heads * head_dim (65536 * 65536)"),
                       InputError);
  // rms_norm_eps is kept as a float: 1e300 would be Inf and zero every activation, quietly.
  const std::string eps = t.write(replaced("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e300"));
  CHECK_THROWS_WITH_AS(model::parse_hf_config(eps), doctest::Contains("positive and finite"), InputError);
}
