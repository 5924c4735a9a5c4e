// weft-make-model: writes a random-weight Mistral/Llama model in Hugging Face layout
// (config.json, model.safetensors, tokenizer.model) with real shapes. The weights are random,
// so the text such a model writes is gibberish; it exists to run and benchmark weft without a
// download. Deterministic: the same preset, dtype and seed give the same bytes.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/dtype.hpp"
#include "io/safetensors.hpp"
#include "io/weight_names.hpp"
#include "tokenizer/tokenizer.hpp"
#include "weft/error.hpp"

namespace fs = std::filesystem;
using namespace weft;

namespace {

struct Preset {
  const char* name;
  const char* architecture;
  int dim, hidden, layers, heads, kv_heads, vocab, sliding_window, max_position;
};

// Shapes of public checkpoints (their config.json files): TinyLlama-1.1B and Mistral-7B-v0.1.
constexpr Preset kPresets[] = {
    {"default", "mistral", 256, 768, 4, 8, 2, 512, 128, 4096},
    {"tinyllama-1.1b", "llama", 2048, 5632, 22, 32, 4, 32000, 0, 2048},
    {"mistral-7b", "mistral", 4096, 14336, 32, 32, 8, 32000, 4096, 32768},
};

// The default model's tokenizer is learned from this text, so its pieces are English-like.
constexpr const char* kCorpus =
    "Once upon a time there was a small loom in a quiet town. Every morning the weaver sat down at the loom "
    "and pulled the threads through, one after another, until a pattern began to show. The weaver liked to "
    "say that a good cloth is made of many threads that each do a little work, and that no thread works "
    "alone. The children of the town came to watch. They asked how the pattern knew where to go, and the "
    "weaver laughed and said that the pattern was in the threads all along; the loom only helps them find "
    "their place. One day a storm came over the hills. The wind was strong and the rain was cold, and the "
    "people of the town stayed inside their houses. The weaver kept working by the light of a lamp. When the "
    "storm was over, there was a long red cloth with blue and golden stripes, and the weaver gave it to the "
    "town so that everyone could share it. The children wrapped themselves in it and were warm. After that "
    "day, whenever the wind blew hard, they remembered the cloth and the weaver who made it, and they were "
    "not afraid. They learned to spin and to weave, to count the threads and to tie the knots, and in time "
    "they made cloths of their own, each with a pattern that nobody had seen before. The town grew, the "
    "market filled with colour, and travellers came from far away to trade for the cloth. Some asked for the "
    "secret of the loom. The answer was always the same: many hands, many threads, and patience.\n"
    "Numbers matter to a weaver: 1, 2, 3, 4, 5, 6, 7, 8, 9 and 10 threads to a finger, 64 to a hand, "
    "128 to a row. \"What is the time?\" she asked. \"It is time to begin,\" he said.\n";

// splitmix64: a small, fast, fully specified generator, so the bytes do not depend on the C++ library.
struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>((next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }  // [-1, 1)
};

void store(float v, DType t, std::byte* out) {
  if (t == DType::F32) {
    std::memcpy(out, &v, 4);
  } else {
    const std::uint16_t h = t == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
    std::memcpy(out, &h, 2);
  }
}

void write_config(const fs::path& dir, const Preset& p, const std::string& dtype) {
  nlohmann::ordered_json j;
  const bool mistral = std::string(p.architecture) == "mistral";
  j["architectures"] = {mistral ? "MistralForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = p.architecture;
  j["hidden_size"] = p.dim;
  j["intermediate_size"] = p.hidden;
  j["num_hidden_layers"] = p.layers;
  j["num_attention_heads"] = p.heads;
  j["num_key_value_heads"] = p.kv_heads;
  j["head_dim"] = p.dim / p.heads;
  j["rms_norm_eps"] = 1e-5;
  j["rope_theta"] = 10000.0;
  if (mistral) j["sliding_window"] = p.sliding_window > 0 ? nlohmann::ordered_json(p.sliding_window) : nlohmann::ordered_json();
  j["max_position_embeddings"] = p.max_position;
  j["vocab_size"] = p.vocab;
  j["tie_word_embeddings"] = false;
  j["hidden_act"] = "silu";
  j["bos_token_id"] = 1;
  j["eos_token_id"] = 2;
  j["torch_dtype"] = dtype == "bf16" ? "bfloat16" : (dtype == "f16" ? "float16" : "float32");
  j["weft_note"] = std::string("random weights from weft-make-model preset ") + p.name;
  std::ofstream(dir / "config.json") << j.dump(2) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write a random-weight Mistral/Llama model in Hugging Face layout (weights are random: the text is gibberish)",
               "weft-make-model"};
  std::string preset_name = "default", dtype_name_arg = "bf16", out, tokenizer_path;
  std::uint64_t seed = 1234;
  int layers = 0;
  app.add_option("--preset", preset_name, "default | tinyllama-1.1b | mistral-7b")->capture_default_str();
  app.add_option("--dtype", dtype_name_arg, "bf16 | f16 | f32")->check(CLI::IsMember({"bf16", "f16", "f32"}))->capture_default_str();
  app.add_option("--seed", seed, "random seed")->capture_default_str();
  app.add_option("--layers", layers, "override the number of layers (0: the preset's)")->check(CLI::Range(0, 1024));
  app.add_option("--tokenizer", tokenizer_path, "copy this tokenizer.model instead of learning one (vocab must match)");
  app.add_option("-o,--output", out, "output directory")->required();
  CLI11_PARSE(app, argc, argv);

  const Preset* preset = nullptr;
  for (const auto& p : kPresets)
    if (preset_name == p.name) preset = &p;
  if (preset == nullptr) {
    std::fprintf(stderr, "weft-make-model: unknown preset '%s' (default, tinyllama-1.1b, mistral-7b)\n", preset_name.c_str());
    return 1;
  }
  Preset p = *preset;
  if (layers > 0) p.layers = layers;
  const DType dt = dtype_name_arg == "bf16" ? DType::BF16 : dtype_name_arg == "f16" ? DType::F16 : DType::F32;

  try {
    const auto t0 = std::chrono::steady_clock::now();
    fs::create_directories(out);
    write_config(out, p, dtype_name_arg);

    if (!tokenizer_path.empty()) {
      fs::copy_file(tokenizer_path, fs::path(out) / "tokenizer.model", fs::copy_options::overwrite_existing);
    } else if (p.vocab <= 4096) {
      const auto pieces = tok::train_bpe(kCorpus, p.vocab);
      std::ofstream(fs::path(out) / "tokenizer.model", std::ios::binary)
          << tok::write_sentencepiece_model(pieces, 0, 1, 2, true, true);
    }

    // Tensors in HF naming; 2-D weights scaled by 1/sqrt(fan_in), norms at 1.
    struct Spec {
      std::string name;
      std::vector<std::int64_t> shape;
      bool norm;
    };
    std::vector<Spec> specs;
    const std::int64_t hd = p.dim / p.heads, q = p.heads * hd, kv = p.kv_heads * hd;
    auto add = [&](io::WeightRole role, int layer, std::vector<std::int64_t> shape) {
      const auto& n = io::weight_name(role);
      const bool norm = shape.size() == 1;
      specs.push_back({layer >= 0 ? io::layer_name(n.hf, layer) : std::string(n.hf), std::move(shape), norm});
    };
    using R = io::WeightRole;
    add(R::TokenEmbedding, -1, {p.vocab, p.dim});
    for (int l = 0; l < p.layers; ++l) {
      add(R::AttnNorm, l, {p.dim});
      add(R::Wq, l, {q, p.dim});
      add(R::Wk, l, {kv, p.dim});
      add(R::Wv, l, {kv, p.dim});
      add(R::Wo, l, {p.dim, q});
      add(R::FfnNorm, l, {p.dim});
      add(R::WGate, l, {p.hidden, p.dim});
      add(R::WUp, l, {p.hidden, p.dim});
      add(R::WDown, l, {p.dim, p.hidden});
    }
    add(R::OutputNorm, -1, {p.dim});
    add(R::Output, -1, {p.vocab, p.dim});

    io::SafetensorsWriter w;
    for (const auto& s : specs) w.add(s.name, s.norm ? DType::F32 : dt, s.shape);
    w.set_metadata({{"format", "pt"}, {"weft_preset", p.name}});
    const std::size_t esize = dtype_bytes(dt, 1);
    const fs::path st = fs::path(out) / "model.safetensors";
    w.write(st.string(), [&](std::size_t i, std::span<std::byte> buf) {
      const Spec& s = specs[i];
      Rng rng{seed * 0x100000001b3ULL + i};
      if (s.norm) {
        for (std::size_t k = 0; k < buf.size() / 4; ++k) store(1.0f + 0.1f * rng.uniform(), DType::F32, buf.data() + 4 * k);
        return;
      }
      const float scale = std::sqrt(3.0f / static_cast<float>(s.shape[1]));
      for (std::size_t k = 0; k < buf.size() / esize; ++k) store(scale * rng.uniform(), dt, buf.data() + esize * k);
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "weft-make-model: wrote %s (%s, %s, %d layers, %.1f MB) in %.1f s\n", out.c_str(), p.name,
                 dtype_name_arg.c_str(), p.layers, static_cast<double>(fs::file_size(st)) / 1e6, secs);
  } catch (const weft::Error& e) {
    std::fprintf(stderr, "weft-make-model: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft-make-model: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
