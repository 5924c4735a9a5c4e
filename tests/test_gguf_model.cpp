// GGUF with the real checkpoints in ../shared: tiny-mistral (HF, bf16) and stories260K (llama2.c
// + tok512.bin) converted with quantize_model and loaded back give the same logits as the
// originals; llama.cpp's own stories260K.gguf loads and matches the .bin; vocabularies carried in
// a GGUF encode the golden cases as the original tokenizer files do.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "io/gguf.hpp"
#include "model/gguf_model.hpp"
#include "testing.hpp"
#include "weft/weft.hpp"

namespace fs = std::filesystem;
using namespace weft;
using weft::testing::shared_dir;

namespace {

const fs::path& tmp_dir() {
  static const weft::testing::ScratchDir dir("weft_gguf_model");
  return dir.path();
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

std::vector<float> read_f32(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  in.seekg(0, std::ios::end);
  std::vector<float> v(static_cast<std::size_t>(in.tellg()) / 4);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  return v;
}

QuantizeOptions qopt(const std::string& type, const std::string& tokenizer = "") {
  QuantizeOptions o;
  o.type = type;
  o.tokenizer_path = tokenizer;
  return o;
}

std::string model_path(const std::string& name) { return (shared_dir() / "models" / name).string(); }

// Logits after each of `tokens`, [tokens, vocab].
std::vector<float> score(const std::shared_ptr<const Model>& m, const std::vector<std::int32_t>& tokens) {
  Context ctx(2);
  Session s(m, ctx);
  std::vector<float> out(tokens.size() * static_cast<std::size_t>(m->info().vocab_size));
  s.score(tokens, out);
  return out;
}

// max |a - b| / max(1, max |b|).
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return worst / scale;
}

void check_encodes_golden(const Tokenizer& t, const fs::path& golden) {
  const auto g = read_json(golden);
  for (const auto& c : g["cases"]) {
    const std::string text = c["text"];
    CAPTURE(text);
    CHECK(t.encode(text, true) == c["ids"].get<std::vector<std::int32_t>>());
  }
}

}  // namespace

TEST_CASE("tiny-mistral (HF bf16) -> GGUF bf16 and f32: same logits as the directory and the golden file") {
  const auto g = read_json(shared_dir() / "golden" / "tiny-mistral.json");
  const auto golden = read_f32(shared_dir() / "golden" / "tiny-mistral.logits.f32");
  const auto tokens = g["tokens"].get<std::vector<std::int32_t>>();
  const auto original = Model::load(model_path("tiny-mistral"));
  const std::vector<float> want = score(original, tokens);
  for (const char* type : {"bf16", "f32"}) {
    CAPTURE(type);
    const std::string out = (tmp_dir() / (std::string("tiny-mistral-") + type + ".gguf")).string();
    const QuantizeSummary s = quantize_model(model_path("tiny-mistral"), out, qopt(type));
    CHECK(s.tensors == 1 + 3 * 9 + 2);
    for (const bool mmap : {true, false}) {
      CAPTURE(mmap);
      const auto m = Model::load(out, LoadOptions{.tokenizer_path = "", .mmap = mmap});
      CHECK(m->info().format == "gguf");
      CHECK(m->info().sliding_window == 8);
      CHECK(m->info().n_kv_heads == 2);
      CHECK(m->info().max_position == original->info().max_position);
      CHECK(m->tokenizer() == nullptr);  // tiny-mistral has none
      const std::vector<float> got = score(m, tokens);
      if (std::string(type) == "bf16") CHECK(got == want);  // same bytes, same kernels: bit-exact
      else CHECK(max_rel_diff(got, want) <= 1e-5);
      weft::testing::expect_close(got, golden, 1e-4);
    }
  }
}

TEST_CASE("stories260K (llama2.c + tok512.bin) -> GGUF f32: same logits, embedded tokenizer encodes the golden cases") {
  const auto original = Model::load(model_path("stories260K.bin"), LoadOptions{.tokenizer_path = model_path("tok512.bin"), .mmap = true});
  const std::string out = (tmp_dir() / "stories260K-f32.gguf").string();
  const QuantizeSummary s =
      quantize_model(model_path("stories260K.bin"), out, qopt("f32", model_path("tok512.bin")));
  CHECK(s.tensors == 1 + 5 * 9 + 1);  // tied: no output.weight
  const auto m = Model::load(out);
  REQUIRE(m->tokenizer() != nullptr);
  CHECK(m->info().format == "gguf");
  CHECK(m->info().n_kv_heads == 4);
  const auto g = read_json(shared_dir() / "golden" / "stories260K_greedy.json");
  std::vector<std::int32_t> tokens = g["prompt_ids"].get<std::vector<std::int32_t>>();
  const auto greedy = g["greedy_ids"].get<std::vector<std::int32_t>>();
  tokens.insert(tokens.end(), greedy.begin(), greedy.begin() + 40);
  CHECK(score(m, tokens) == score(original, tokens));  // f32 in, f32 out, rows moved back: bit-exact
  check_encodes_golden(*m->tokenizer(), shared_dir() / "golden" / "tok512_encode.json");
  CHECK(m->tokenizer()->encode(g["prompt"].get<std::string>()) == g["prompt_ids"].get<std::vector<std::int32_t>>());
}

TEST_CASE("llama.cpp's stories260K.gguf loads and matches stories260K.bin") {
  const io::GgufFile f(model_path("stories260K.gguf"));
  CHECK(f.version() == 3);
  const auto original = Model::load(model_path("stories260K.bin"), LoadOptions{.tokenizer_path = model_path("tok512.bin"), .mmap = true});
  const auto m = Model::load(model_path("stories260K.gguf"));
  CHECK(m->info().format == "gguf");
  CHECK(m->info().dim == 64);
  CHECK(m->info().hidden_dim == 172);
  CHECK(m->info().n_layers == 5);
  CHECK(m->info().n_heads == 8);
  CHECK(m->info().n_kv_heads == 4);
  CHECK(m->info().vocab_size == 512);
  CHECK(m->info().max_position == 128);  // what the converter wrote (see ../shared/models/README.md)
  REQUIRE(m->tokenizer() != nullptr);
  check_encodes_golden(*m->tokenizer(), shared_dir() / "golden" / "tok512_encode.json");
  const auto g = read_json(shared_dir() / "golden" / "stories260K_greedy.json");
  std::vector<std::int32_t> tokens = g["prompt_ids"].get<std::vector<std::int32_t>>();
  const auto greedy = g["greedy_ids"].get<std::vector<std::int32_t>>();
  tokens.insert(tokens.end(), greedy.begin(), greedy.begin() + 40);
  const std::vector<float> got = score(m, tokens), want = score(original, tokens);
  CHECK(max_rel_diff(got, want) <= 1e-5);
  // Greedy decoding reproduces the golden ids as far as the file's 128-position context allows.
  Context ctx(2);
  Session s(m, ctx);
  GenerateOptions o;
  o.max_tokens = 100;
  o.sampler.temperature = 0;
  o.stop_at_eos = false;
  const auto ids = generate_ids(s, g["prompt_ids"].get<std::vector<std::int32_t>>(), o, -1, nullptr).ids;
  CHECK(ids == std::vector<std::int32_t>(greedy.begin(), greedy.begin() + 100));
}

TEST_CASE("the LLaMA tokenizer.model carried through GGUF metadata encodes the golden cases") {
  const auto t = tok::Tokenizer::from_sentencepiece_file(model_path("tokenizer.model"));
  const std::string path = (tmp_dir() / "vocab.gguf").string();
  model::MistralConfig c;
  c.dim = 64;
  c.hidden_dim = 64;
  c.n_layers = 1;
  c.n_heads = 1;
  c.n_kv_heads = 1;
  c.head_dim = 64;
  c.vocab_size = t.vocab_size();
  c.max_position = 64;
  {
    io::GgufWriter w(path);
    model::write_gguf_metadata(w, c, &t);
    w.finish();
  }
  const io::GgufFile f(path);
  const tok::Tokenizer back = model::tokenizer_from_gguf(f);
  CHECK(back.pieces() == t.pieces());
  CHECK(back.bos_id() == t.bos_id());
  CHECK(back.eos_id() == t.eos_id());
  CHECK(back.unk_id() == t.unk_id());
  check_encodes_golden(Tokenizer(std::make_shared<const tok::Tokenizer>(back)),
                       shared_dir() / "golden" / "tokenizer_model_encode.json");
}

#if __has_include("core/quant.hpp")
TEST_CASE("quantized GGUFs load with quantized views (the forward pass is not run here)") {
  for (const char* type : {"q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m"}) {
    CAPTURE(type);
    const std::string out = (tmp_dir() / (std::string("tiny-") + type + ".gguf")).string();
    const QuantizeSummary s = quantize_model(model_path("tiny-mistral"), out, qopt(type));
    CHECK(s.bytes_out < s.bytes_in);
    const io::GgufFile f(out);
    const DType q = f.find_tensor("blk.0.attn_q.weight")->dtype;
    // 64 columns are two Q8_0/Q4_0 blocks but not a k-quant block: k-quants fall back to Q8_0.
    CHECK(q == (std::string(type) == "q4_0" ? DType::Q4_0 : DType::Q8_0));
    CHECK(f.find_tensor("blk.0.attn_norm.weight")->dtype == DType::F32);
    CHECK(s.fallbacks == (std::string(type).find("_k") != std::string::npos ? s.tensors - 1 - 3 * 2 : 0));
    const auto m = Model::load(out);
    CHECK(m->info().weight_dtype == dtype_name(q));
  }
}
#endif
