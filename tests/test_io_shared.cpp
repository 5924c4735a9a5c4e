// lib/io on the real checkpoints in ../shared/models (stories260K.bin, tiny-mistral/model.safetensors).
// Reference values were read from the files with an independent Python script (struct + json).
#include <cmath>
#include <filesystem>
#include <numeric>
#include <string>

#include "io/llama2c.hpp"
#include "io/safetensors.hpp"
#include "io/weight_names.hpp"
#include "testing.hpp"

using namespace weft;
using namespace weft::io;

namespace {
double sum(std::span<const float> v) { return std::accumulate(v.begin(), v.end(), 0.0); }
}  // namespace

TEST_CASE("stories260K.bin: header, shapes and values") {
  const std::string path = (weft::testing::shared_dir() / "models" / "stories260K.bin").string();
  REQUIRE(std::filesystem::exists(path));
  const Llama2cCheckpoint ck(path);
  const Llama2cConfig& c = ck.config();
  CHECK(c.dim == 64);
  CHECK(c.hidden_dim == 172);
  CHECK(c.n_layers == 5);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.vocab_size == 512);
  CHECK(c.seq_len == 512);
  CHECK(c.shared_classifier);
  CHECK(ck.tensor(WeightRole::Output, -1).empty());

  const TensorView emb = ck.tensor(WeightRole::TokenEmbedding, -1);
  CHECK(emb.rows == 512);
  CHECK(emb.cols == 64);
  CHECK(emb.f32()[0] == doctest::Approx(-0.29474878311157227));
  CHECK(emb.f32()[1] == doctest::Approx(0.5618956089019775));
  CHECK(emb.f32().back() == doctest::Approx(-0.424032598733902));
  CHECK(sum(emb.f32()) == doctest::Approx(-752.3677446640068).epsilon(1e-6));

  const TensorView wk = ck.tensor(WeightRole::Wk, 1);
  CHECK(wk.rows == 32);  // n_kv_heads * head_size
  CHECK(wk.cols == 64);
  CHECK(wk.f32()[0] == doctest::Approx(0.05496238172054291));
  CHECK(wk.f32()[1] == doctest::Approx(0.0741962119936943));

  const TensorView down = ck.tensor(WeightRole::WDown, 4);
  CHECK(down.rows == 64);
  CHECK(down.cols == 172);
  CHECK(down.f32()[0] == doctest::Approx(-0.04791264981031418));
  CHECK(sum(down.f32()) == doctest::Approx(19.543787761240765).epsilon(1e-6));
  CHECK(ck.tensor(WeightRole::WGate, 0).rows == 172);
  CHECK(ck.tensor(WeightRole::WUp, 0).cols == 64);
  CHECK(ck.tensor(WeightRole::Wq, 4).rows == 64);

  CHECK(ck.tensor(WeightRole::AttnNorm, 0).f32()[0] == doctest::Approx(0.9722429513931274));
  const TensorView norm = ck.tensor(WeightRole::OutputNorm, -1);
  CHECK(norm.ndim == 1);
  CHECK(norm.f32()[0] == doctest::Approx(2.4583089351654053));
  CHECK(sum(norm.f32()) == doctest::Approx(115.95276230573654).epsilon(1e-6));
  // Right after the final norm come the RoPE tables: cos(0) = 1 in the real part, then sin(0) = 0
  // at the start of the imaginary part (seq_len * head_size/2 floats later), which ends the file.
  const float* rope = norm.f32().data() + norm.cols;
  CHECK(rope[0] == 1.0f);
  CHECK(rope[512 * 4] == 0.0f);
  CHECK(reinterpret_cast<const std::byte*>(rope + 2 * 512 * 4) ==
        static_cast<const std::byte*>(emb.data) - 28 + std::filesystem::file_size(path));
}

TEST_CASE("tiny-mistral/model.safetensors: names, shapes, dtypes") {
  const std::string dir = (weft::testing::shared_dir() / "models" / "tiny-mistral").string();
  const std::string file = (std::filesystem::path(dir) / "model.safetensors").string();
  const SafetensorsFile f(file);
  CHECK(f.entries().size() == 3 * 9 + 3);
  CHECK(f.metadata().at("format") == "pt");
  for (const SafetensorsEntry& e : f.entries()) {
    CAPTURE(e.name);
    CHECK(e.dtype == DType::BF16);
    CHECK(parse_hf_name(e.name).has_value());
  }

  const SafetensorsSet set = SafetensorsSet::open_directory(dir);
  CHECK(set.names().size() == 30);
  const auto shape_of = [&](const std::string& name) {
    const SafetensorsEntry* e = set.find(name);
    REQUIRE_MESSAGE(e != nullptr, name);
    CHECK(e->data.size() == 2 * static_cast<std::size_t>(std::accumulate(e->shape.begin(), e->shape.end(),
                                                                         std::int64_t{1}, std::multiplies<>())));
    return e->shape;
  };
  using Shape = std::vector<std::int64_t>;
  CHECK(shape_of("model.embed_tokens.weight") == Shape{512, 64});
  CHECK(shape_of("lm_head.weight") == Shape{512, 64});
  CHECK(shape_of("model.norm.weight") == Shape{64});
  for (int l = 0; l < 3; ++l) {
    CAPTURE(l);
    const auto name = [&](WeightRole r) { return layer_name(weight_name(r).hf, l); };
    CHECK(shape_of(name(WeightRole::AttnNorm)) == Shape{64});
    CHECK(shape_of(name(WeightRole::FfnNorm)) == Shape{64});
    CHECK(shape_of(name(WeightRole::Wq)) == Shape{64, 64});
    CHECK(shape_of(name(WeightRole::Wk)) == Shape{16, 64});  // 2 KV heads of 8
    CHECK(shape_of(name(WeightRole::Wv)) == Shape{16, 64});
    CHECK(shape_of(name(WeightRole::Wo)) == Shape{64, 64});
    CHECK(shape_of(name(WeightRole::WGate)) == Shape{160, 64});
    CHECK(shape_of(name(WeightRole::WUp)) == Shape{160, 64});
    CHECK(shape_of(name(WeightRole::WDown)) == Shape{64, 160});
  }
  CHECK(set.find("model.layers.3.input_layernorm.weight") == nullptr);
  CHECK(set.file_of("lm_head.weight") == file);

  // bf16 values as stored (read unaligned-safe: the bytes, not a uint16_t pointer).
  const auto bf16_at = [](const SafetensorsEntry& e, std::size_t i) {
    return static_cast<std::uint16_t>(static_cast<unsigned>(e.data[2 * i]) |
                                      (static_cast<unsigned>(e.data[2 * i + 1]) << 8));
  };
  const SafetensorsEntry& norm = *set.find("model.norm.weight");
  CHECK(bf16_at(norm, 0) == 0x3fa8);
  CHECK(bf16_to_f32(bf16_at(norm, 1)) == 1.0234375f);
  const SafetensorsEntry& head = *set.find("lm_head.weight");
  CHECK(bf16_to_f32(bf16_at(head, 0)) == -0.3828125f);
  CHECK(bf16_to_f32(bf16_at(head, 2)) == 0.8671875f);
  const SafetensorsEntry& k2 = *set.find("model.layers.2.self_attn.k_proj.weight");
  CHECK(bf16_at(k2, 0) == 0xbe1e);
  CHECK(bf16_at(k2, 2) == 0x3d70);
}
