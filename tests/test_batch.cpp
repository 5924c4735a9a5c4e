// Several sequences decoded together (BatchSession, generate_batch_ids) give exactly what each
// sequence gives alone: the batched matrix products equal the single-vector ones bit for bit, and
// each sequence attends only to its own KV cache.
#include <random>
#include <vector>

#include "testing.hpp"
#include "weft/weft.hpp"

using namespace weft;
using weft::testing::shared_dir;

namespace {
std::shared_ptr<const Model> tiny_mistral() { return Model::load((shared_dir() / "models" / "tiny-mistral").string()); }
std::shared_ptr<const Model> stories() {
  return Model::load((shared_dir() / "models" / "stories260K.bin").string(),
                     {.tokenizer_path = (shared_dir() / "models" / "tok512.bin").string()});
}

// Prompts of different lengths (so the sequences sit at different positions), some longer than
// tiny-mistral's sliding window of 8.
std::vector<std::vector<std::int32_t>> random_prompts(int count, int vocab, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<std::int32_t>> out;
  for (int i = 0; i < count; ++i) {
    std::vector<std::int32_t> p(static_cast<std::size_t>(1 + (i * 7) % 13));
    p[0] = 1;
    for (std::size_t j = 1; j < p.size(); ++j) p[j] = std::uniform_int_distribution<std::int32_t>(3, vocab - 1)(rng);
    out.push_back(p);
  }
  return out;
}

GenerateOptions greedy(int n) {
  GenerateOptions o;
  o.max_tokens = n;
  o.sampler.temperature = 0;
  o.stop_at_eos = false;
  return o;
}
}  // namespace

TEST_CASE("BatchSession: logits of sequences decoded together equal each sequence alone, bit for bit") {
  for (auto model : {tiny_mistral(), stories()}) {
    CAPTURE(model->info().source);
    const int vocab = model->info().vocab_size;
    const auto prompts = random_prompts(4, vocab, 7);
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      Context ctx(threads);
      // Alone: each prompt, then 12 fixed continuation tokens, one decode at a time.
      std::vector<std::vector<float>> alone;
      for (const auto& p : prompts) {
        Session s(model, ctx);
        s.prefill(p);
        std::vector<float> all;
        for (int step = 0; step < 12; ++step) {
          auto l = s.decode(static_cast<std::int32_t>(3 + step * 5));
          all.insert(all.end(), l.begin(), l.end());
        }
        alone.push_back(all);
      }
      // Together.
      BatchSession b(model, ctx, {.max_sequences = 4});
      std::vector<int> seqs;
      for (const auto& p : prompts) {
        const int q = b.open();
        b.prefill(q, p);
        seqs.push_back(q);
      }
      std::vector<std::vector<float>> together(prompts.size());
      for (int step = 0; step < 12; ++step) {
        const std::vector<std::int32_t> tokens(prompts.size(), static_cast<std::int32_t>(3 + step * 5));
        auto rows = b.decode(seqs, tokens);
        REQUIRE(rows.size() == prompts.size() * static_cast<std::size_t>(vocab));
        for (std::size_t i = 0; i < prompts.size(); ++i)
          together[i].insert(together[i].end(), rows.begin() + static_cast<std::ptrdiff_t>(i * vocab),
                             rows.begin() + static_cast<std::ptrdiff_t>((i + 1) * vocab));
      }
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        CAPTURE(i);
        CHECK(b.position(seqs[i]) == static_cast<std::int64_t>(prompts[i].size()) + 12);
        CHECK(together[i] == alone[i]);
      }
    }
  }
}

TEST_CASE("generate_batch_ids: continuous batching gives every prompt its solo greedy ids, in input order") {
  for (auto model : {tiny_mistral(), stories()}) {
    CAPTURE(model->info().source);
    const auto prompts = random_prompts(7, model->info().vocab_size, 11);
    Context ctx(2);
    std::vector<std::vector<std::int32_t>> solo;
    for (const auto& p : prompts) {
      Session s(model, ctx);
      solo.push_back(generate_ids(s, p, greedy(20), -1, nullptr).ids);
    }
    for (int batch : {1, 3, 8}) {
      CAPTURE(batch);
      BatchSession b(model, ctx, {.max_sequences = batch});
      std::vector<std::size_t> done_order;
      const auto r = generate_batch_ids(b, prompts, greedy(20), -1,
                                        [&](std::size_t i, const GenerateResult&) { done_order.push_back(i); });
      REQUIRE(r.results.size() == prompts.size());
      CHECK(done_order.size() == prompts.size());
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        CAPTURE(i);
        CHECK(r.results[i].prompt_ids == prompts[i]);
        CHECK(r.results[i].ids == solo[i]);
      }
      CHECK(r.generated == static_cast<std::int64_t>(prompts.size()) * 20);
    }
  }
}

TEST_CASE("generate_batch_ids: sequences that stop early (at different steps) free their slots") {
  auto model = stories();
  // Real text prompts, and "." as the stop token: each sequence ends at its first full stop, so
  // they finish at different steps and later prompts take over their slots.
  const Tokenizer& tok = *model->tokenizer();
  const std::vector<std::int32_t> dot = tok.encode(".", false);
  REQUIRE(!dot.empty());
  const std::int32_t stop = dot.back();
  std::vector<std::vector<std::int32_t>> prompts;
  for (const char* p : {"Once upon a time", "The cat", "Lily and Tom went to the park. They", "One day", "Sam had a"})
    prompts.push_back(tok.encode(p, true));
  GenerateOptions o = greedy(150);
  o.stop_at_eos = true;
  Context ctx(2);
  std::vector<GenerateResult> solo;
  for (const auto& p : prompts) {
    Session s(model, ctx, {.context = 512});
    solo.push_back(generate_ids(s, p, o, stop, nullptr));
  }
  BatchSession b(model, ctx, {.max_sequences = 2, .context = 512});
  const auto r = generate_batch_ids(b, prompts, o, stop, nullptr);
  int stopped_at_eos = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    CAPTURE(i);
    CHECK(r.results[i].ids == solo[i].ids);
    CHECK(r.results[i].hit_eos == solo[i].hit_eos);
    stopped_at_eos += solo[i].hit_eos;
  }
  CHECK(stopped_at_eos >= 3);
}

TEST_CASE("BatchSession: misuse is refused with a clear error") {
  auto model = tiny_mistral();
  Context ctx(1);
  BatchSession b(model, ctx, {.max_sequences = 2, .context = 16});
  const int a = b.open();
  const int c = b.open();
  CHECK_THROWS_WITH_AS(b.open(), doctest::Contains("in use"), UsageError);
  const std::vector<std::int32_t> one{1};
  b.prefill(a, one);
  const std::vector<int> twice{a, a};
  const std::vector<std::int32_t> two{5, 6};
  CHECK_THROWS_WITH_AS(b.decode(twice, two), doctest::Contains("twice"), UsageError);
  const std::vector<int> both{a, c};
  CHECK_THROWS_WITH_AS(b.decode(both, one), doctest::Contains("tokens"), UsageError);
  b.close(c);
  const std::vector<int> closed{c};
  CHECK_THROWS_WITH_AS(b.decode(closed, one), doctest::Contains("not open"), UsageError);
  CHECK_THROWS_AS(b.close(c), UsageError);
  const std::vector<std::int32_t> bad{100000};
  const std::vector<int> just_a{a};
  CHECK_THROWS_WITH_AS(b.decode(just_a, bad), doctest::Contains("outside the vocabulary"), UsageError);
  CHECK_THROWS_AS(BatchSession(model, ctx, {.max_sequences = 0}), UsageError);
}

TEST_CASE("pipeline parallel: stages of contiguous layers give the same logits and ids as one rank") {
  for (auto model : {tiny_mistral(), stories()}) {
    CAPTURE(model->info().source);
    const auto prompts = random_prompts(6, model->info().vocab_size, 5);
    Context ctx(2);
    std::vector<std::vector<std::int32_t>> solo;
    for (const auto& p : prompts) {
      Session s(model, ctx);
      solo.push_back(generate_ids(s, p, greedy(16), -1, nullptr).ids);
    }
    for (int stages : {2, 3}) {
      for (int micro : {1, 2, 4}) {
        CAPTURE(stages);
        CAPTURE(micro);
        BatchSession b(model, ctx, {.max_sequences = 4, .block_size = 5, .pipeline_stages = stages, .micro_batches = micro});
        const auto r = generate_batch_ids(b, prompts, greedy(16), -1, nullptr);
        for (std::size_t i = 0; i < prompts.size(); ++i) {
          CAPTURE(i);
          CHECK(r.results[i].ids == solo[i]);
        }
      }
    }
    // Logits, bit for bit, through prefill blocks that flow through the stages (block 5 < prompt).
    std::vector<std::int32_t> prompt(23);
    for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<std::int32_t>(1 + i * 13 % 500);
    Session s(model, ctx, {.block_size = 5});
    const auto expect = s.prefill(prompt);
    const std::vector<float> want(expect.begin(), expect.end());
    BatchSession b(model, ctx, {.max_sequences = 1, .block_size = 5, .pipeline_stages = 2});
    const int q = b.open();
    const auto got = b.prefill(q, prompt);
    CHECK(std::vector<float>(got.begin(), got.end()) == want);
  }
  auto model = tiny_mistral();  // 3 layers
  Context ctx(2);
  CHECK_THROWS_WITH_AS(BatchSession(model, ctx, {.pipeline_stages = 4}), doctest::Contains("only 3 layers"), UsageError);
}
