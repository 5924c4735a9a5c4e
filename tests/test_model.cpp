// The model against golden outputs from an independent float64 reference (../shared/golden).
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "testing.hpp"
#include "weft/weft.hpp"

using namespace weft;
using weft::testing::shared_dir;

namespace {
nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

std::vector<float> read_f32(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  in.seekg(0, std::ios::end);
  std::vector<float> v(static_cast<std::size_t>(in.tellg()) / 4);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  return v;
}

std::vector<std::int32_t> greedy(Session& s, const std::vector<std::int32_t>& prompt, int n) {
  GenerateOptions o;
  o.max_tokens = n;
  o.sampler.temperature = 0;
  o.stop_at_eos = false;
  return generate_ids(s, prompt, o, -1, nullptr).ids;
}

std::string tiny_mistral() { return (shared_dir() / "models" / "tiny-mistral").string(); }
}  // namespace

TEST_CASE("tiny-mistral logits match the golden reference within 1e-4, at 1 and 2 threads") {
  const auto g = read_json(shared_dir() / "golden" / "tiny-mistral.json");
  const auto golden = read_f32(shared_dir() / "golden" / "tiny-mistral.logits.f32");
  const auto tokens = g["tokens"].get<std::vector<std::int32_t>>();
  auto model = Model::load(tiny_mistral());
  CHECK(model->info().sliding_window == 8);
  REQUIRE(golden.size() == tokens.size() * 512);
  std::vector<float> first;
  for (int threads : {1, 2}) {
    for (int block : {64, 5, 1}) {  // whole prompt, blocks that straddle the window, token by token
      CAPTURE(threads);
      CAPTURE(block);
      Context ctx(threads);
      Session s(model, ctx, {.block_size = block});
      std::vector<float> logits(golden.size());
      s.score(tokens, logits);
      weft::testing::expect_close(logits, golden, 1e-4);
      if (first.empty()) first = logits;
      if (block == 64) CHECK(logits == first);  // thread count does not change a single bit
    }
  }
}

TEST_CASE("tiny-mistral greedy ids match the golden 40") {
  const auto g = read_json(shared_dir() / "golden" / "tiny-mistral.json");
  auto model = Model::load(tiny_mistral());
  Context ctx(2);
  Session s(model, ctx);
  CHECK(greedy(s, g["greedy_prompt"].get<std::vector<std::int32_t>>(), 40) == g["greedy_ids"].get<std::vector<std::int32_t>>());
}

TEST_CASE("stories260K: 200 greedy ids, text and top-5 logits match the golden run") {
  const auto g = read_json(shared_dir() / "golden" / "stories260K_greedy.json");
  auto model = Model::load((shared_dir() / "models" / "stories260K.bin").string(),
                           {.tokenizer_path = (shared_dir() / "models" / "tok512.bin").string()});
  REQUIRE(model->tokenizer() != nullptr);
  const auto prompt = g["prompt_ids"].get<std::vector<std::int32_t>>();
  CHECK(model->tokenizer()->encode(g["prompt"].get<std::string>()) == prompt);
  const auto want = g["greedy_ids"].get<std::vector<std::int32_t>>();
  for (int threads : {1, 2}) {
    Context ctx(threads);
    Session s(model, ctx);
    const auto ids = greedy(s, prompt, 200);
    CHECK(ids == want);
    CHECK(model->tokenizer()->decode(ids) == g["greedy_text"].get<std::string>());
  }

  // Logits at every position: the golden top-5 values within 2e-4.
  std::vector<std::int32_t> all = prompt;
  all.insert(all.end(), want.begin(), want.end());
  Context ctx(2);
  Session s(model, ctx);
  std::vector<float> logits(all.size() * 512);
  s.score(all, logits);
  const auto& top5 = g["top5_per_position"];
  REQUIRE(top5.size() == all.size());
  double worst = 0;
  for (std::size_t i = 0; i < all.size(); ++i)
    for (const auto& pair : top5[i]) {
      const double d = std::fabs(logits[i * 512 + pair[0].get<int>()] - pair[1].get<double>());
      worst = std::max(worst, d);
    }
  CHECK(worst < 2e-4);
}

TEST_CASE("generate streams the same text as decoding the ids") {
  auto model = Model::load((shared_dir() / "models" / "stories260K.bin").string(),
                           {.tokenizer_path = (shared_dir() / "models" / "tok512.bin").string()});
  Context ctx(1);
  Session s(model, ctx);
  GenerateOptions o;
  o.max_tokens = 60;
  o.sampler.temperature = 0.9f;
  o.sampler.seed = 7;
  std::string streamed;
  const auto r = generate(s, "Once upon a time", o, [&](std::string_view t) { streamed += t; });
  // The stream keeps the space before the first generated word: prompt + stream is the whole text.
  std::vector<std::int32_t> all = r.prompt_ids;
  all.insert(all.end(), r.ids.begin(), r.ids.end());
  CHECK("Once upon a time" + streamed == model->tokenizer()->decode(all));
  CHECK(r.ids.size() == 60);
  // Same seed, same text.
  Session s2(model, ctx);
  std::string again;
  generate(s2, "Once upon a time", o, [&](std::string_view t) { again += t; });
  CHECK(again == streamed);
}

TEST_CASE("prefill of a block equals decoding token by token, and reset starts over") {
  const auto g = read_json(shared_dir() / "golden" / "tiny-mistral.json");
  const auto tokens = g["tokens"].get<std::vector<std::int32_t>>();
  auto model = Model::load(tiny_mistral());
  Context ctx(2);
  Session a(model, ctx), b(model, ctx);
  const auto pa = a.prefill(tokens);
  std::vector<float> from_block(pa.begin(), pa.end());
  std::span<const float> pb;
  for (auto t : tokens) pb = b.decode(t);
  weft::testing::expect_close(from_block, std::vector<float>(pb.begin(), pb.end()), 1e-5);
  b.reset();
  CHECK(b.position() == 0);
  const auto again = b.prefill(tokens);
  weft::testing::expect_close(from_block, std::vector<float>(again.begin(), again.end()), 1e-5);
  CHECK(a.position() == static_cast<std::int64_t>(tokens.size()));
}

TEST_CASE("context limits and bad ids are usage errors") {
  auto model = Model::load((shared_dir() / "models" / "stories260K.bin").string());
  Context ctx(1);
  Session s(model, ctx, {.context = 4});
  CHECK(s.context_limit() == 4);
  const std::vector<std::int32_t> five = {1, 2, 3, 4, 5};
  CHECK_THROWS_WITH_AS(s.prefill(five), doctest::Contains("context full"), UsageError);
  const std::vector<std::int32_t> bad = {1, 512};
  CHECK_THROWS_WITH_AS(s.prefill(bad), doctest::Contains("outside the vocabulary"), UsageError);
  CHECK_THROWS_AS(s.prefill({}), UsageError);
  // A sliding-window model never runs out of context: its cache rolls.
  auto tiny = Model::load(tiny_mistral());
  Session roll(tiny, ctx);
  CHECK_FALSE(roll.context_limit().has_value());
}
