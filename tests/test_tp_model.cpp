// TensorParallelMistral against the single-rank model: logits within rounding (tp_tolerance) and
// identical greedy ids at tensor-parallel sizes 1, 2 and 4 (real checkpoints from ../shared), on this machine and
// on a synthetic two-node topology; KV-head replication; uneven splits (tp 3 on a model whose
// heads allow it); the refusals; and shard directories that each rank reads alone.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <unistd.h>
#include <vector>

#include "model/forward.hpp"
#include "model/tensor_parallel_model.hpp"
#include "model/weights.hpp"
#include "parallel/exec_context.hpp"
#include "testing.hpp"
#include "weft/plan.hpp"
#include "weft/weft.hpp"

using namespace weft;
using weft::testing::expect_close;
using weft::testing::shared_dir;
namespace fs = std::filesystem;

namespace {

std::string tiny_path() { return (shared_dir() / "models" / "tiny-mistral").string(); }
std::string stories_path() { return (shared_dir() / "models" / "stories260K.bin").string(); }
std::string tok512() { return (shared_dir() / "models" / "tok512.bin").string(); }

std::shared_ptr<const Model> load(const std::string& path) {
  return Model::load(path, {.tokenizer_path = path.ends_with(".bin") ? tok512() : std::string()});
}

// A prompt of `n` ids in [3, vocab): longer than tiny-mistral's window of 8.
std::vector<std::int32_t> some_tokens(int n, int vocab, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  t[0] = 1;
  for (std::size_t i = 1; i < t.size(); ++i) t[i] = std::uniform_int_distribution<std::int32_t>(3, vocab - 1)(rng);
  return t;
}

std::vector<float> score(const std::shared_ptr<const Model>& m, const std::vector<std::int32_t>& tokens, SessionOptions o,
                         int threads = 2) {
  Context ctx(threads);
  Session s(m, ctx, o);
  std::vector<float> out(tokens.size() * static_cast<std::size_t>(m->info().vocab_size));
  s.score(tokens, out);
  return out;
}

std::vector<std::int32_t> greedy(const std::shared_ptr<const Model>& m, const std::vector<std::int32_t>& prompt, int n,
                                 SessionOptions o) {
  Context ctx(2);
  Session s(m, ctx, o);
  GenerateOptions g;
  g.max_tokens = n;
  g.sampler.temperature = 0;
  g.stop_at_eos = false;
  return generate_ids(s, prompt, g, -1, nullptr).ids;
}

// Tensor-parallel logits differ from one rank's only in the order of float sums (row-parallel
// partial products, summed by the all-reduce in rank order), an error that scales with the
// logits. The bound: 32 float epsilons of the largest |logit| of `want`, and at least 1e-5 (the
// logits of tiny-mistral reach 17: 6.5e-5). Measured: at most 1.1e-5. A fixed 1e-5 failed in
// the ASan+UBSan build (-O2, instrumented), whose floating-point code alone moves one rank's
// logits by as much from the release build's (1.2e-5 on the reference kernels).
double tp_tolerance(std::span<const float> want) {
  float largest = 0;
  for (float x : want) largest = std::max(largest, std::fabs(x));
  return std::max(1e-5, 32.0 * std::numeric_limits<float>::epsilon() * largest);
}

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A fresh temporary directory, removed at the end of the test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("weft_tp_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("tensor parallel: logits within rounding of one rank and the same 40 greedy ids, tp 2 and 4") {
  for (const std::string& path : {tiny_path(), stories_path()}) {
    CAPTURE(path);
    auto m = load(path);
    const int vocab = m->info().vocab_size;
    const auto tokens = some_tokens(21, vocab, 3);
    const auto flat = score(m, tokens, {});
    const auto flat_ids = greedy(m, {1, 5, 9}, 40, {});
    REQUIRE(flat_ids.size() == 40);
    for (int tp : {2, 4}) {
      CAPTURE(tp);
      for (int block : {64, 5}) {  // the whole prompt in one block, and blocks that straddle the window
        CAPTURE(block);
        expect_close(score(m, tokens, {.block_size = block, .tp = tp}), flat, tp_tolerance(flat));
      }
      CHECK(greedy(m, {1, 5, 9}, 40, {.tp = tp}) == flat_ids);
    }
  }
}

TEST_CASE("tensor parallel on a synthetic two-node topology: ranks on different nodes, same logits") {
  for (const std::string& path : {tiny_path(), stories_path()}) {
    CAPTURE(path);
    auto m = load(path);
    const auto tokens = some_tokens(13, m->info().vocab_size, 5);
    const auto flat = score(m, tokens, {});
    const auto flat_ids = greedy(m, {1, 7}, 40, {});
    for (const auto& [tp, topo] : {std::pair{2, "pack:2 [numa] core:1 pu:1"}, std::pair{4, "pack:2 [numa] core:2 pu:1"}}) {
      CAPTURE(tp);
      expect_close(score(m, tokens, {.tp = tp, .topology = topo}, tp), flat, tp_tolerance(flat));
      CHECK(greedy(m, {1, 7}, 40, {.tp = tp, .topology = topo}) == flat_ids);
    }
  }
  // Where the ranks land: rank 0 on node 0, the last rank on node 1.
  const model::LoadedModel lm = model::load_model(tiny_path(), "");
  model::TensorParallelMistral tp(lm, {.tp = 2, .threads = 2, .topology = "pack:2 [numa] core:1 pu:1"});
  CHECK(tp.group().rank(0).placement().numa_node == 0);
  CHECK(tp.group().rank(1).placement().numa_node == 1);
  CHECK_FALSE(tp.group().rank(1).pinned());  // not this machine: placement only
}

TEST_CASE("tensor parallel size 1 through the rank machinery equals the single-rank model bit for bit") {
  const model::LoadedModel lm = model::load_model(tiny_path(), "");
  const auto& c = lm.config;
  const auto tokens = some_tokens(12, c.vocab_size, 9);
  const int n = static_cast<int>(tokens.size());
  par::ExecContext ctx(1);
  model::KVCache cache(c, 64);
  model::ForwardState st(c, n, cache.capacity, 1);
  model::forward_block(c, lm.weights, ctx, cache, st, tokens.data(), n, 0, true);
  model::TensorParallelMistral tp(lm, {.tp = 1, .threads = 1});
  auto state = tp.make_state(1, 64, n);
  std::vector<float> out(static_cast<std::size_t>(n) * c.vocab_size);
  const model::TensorParallelMistral::Run run{.seq = 0, .first_row = 0, .n_rows = n, .pos0 = 0};
  tp.forward(*state, {&run, 1}, tokens.data(), n, true, out.data());
  CHECK(std::equal(out.begin(), out.end(), st.logits.data()));
}

TEST_CASE("more ranks than KV heads: each KV head is copied to the ranks whose query heads use it") {
  const model::LoadedModel lm = model::load_model(tiny_path(), "");  // 8 heads, 2 KV heads, head_dim 8
  const auto& c = lm.config;
  model::TensorParallelMistral tp(lm, {.tp = 4, .threads = 4, .topology = "pack:2 [numa] core:2 pu:1"});
  CHECK(tp.layout().kv_copies == 2);
  for (int r = 0; r < 4; ++r) {
    CAPTURE(r);
    const auto& lc = tp.local_config(r);
    CHECK(lc.n_heads == 2);
    CHECK(lc.n_kv_heads == 1);
    CHECK(lc.dim == c.dim);
    const int kv_head = r / 2;  // ranks 0, 1 use KV head 0; ranks 2, 3 KV head 1
    for (int layer = 0; layer < c.n_layers; ++layer) {
      const auto& full = lm.weights.layers[static_cast<std::size_t>(layer)];
      const auto& local = tp.local_weights(r).layers[static_cast<std::size_t>(layer)];
      REQUIRE(local.wk.rows == c.head_dim);
      CHECK(std::memcmp(local.wk.data, full.wk.row(kv_head * c.head_dim), local.wk.bytes()) == 0);
      CHECK(std::memcmp(local.wv.data, full.wv.row(kv_head * c.head_dim), local.wv.bytes()) == 0);
      CHECK(std::memcmp(local.wq.data, full.wq.row(r * 2 * c.head_dim), local.wq.bytes()) == 0);
      CHECK(local.wo.cols == 2 * c.head_dim);
    }
  }
  // The MLP width 160 in units of 16: 3, 3, 2, 2 units.
  CHECK(tp.local_config(0).hidden_dim == 48);
  CHECK(tp.local_config(3).hidden_dim == 32);
}

TEST_CASE("dimensions that do not split give errors that name them") {
  model::MistralConfig c;
  c.dim = 4096, c.hidden_dim = 14336, c.n_layers = 32, c.n_heads = 32, c.n_kv_heads = 8, c.head_dim = 128, c.vocab_size = 32000;
  CHECK(error_of([&] { model::TensorParallelLayout::make(c, 3); }) ==
        "num_key_value_heads (8) is not divisible by tensor-parallel size 3");
  CHECK_NOTHROW(model::TensorParallelLayout::make(c, 16));  // 16 ranks: each KV head on 2 of them
  CHECK_THROWS_WITH_AS(model::TensorParallelLayout::make(c, 12),
                       doctest::Contains("num_key_value_heads (8) is not divisible by tensor-parallel size 12"), UsageError);
  model::MistralConfig d = c;
  d.n_heads = 6, d.n_kv_heads = 2;
  CHECK(error_of([&] { model::TensorParallelLayout::make(d, 4); }) ==
        "num_attention_heads (6) is not divisible by tensor-parallel size 4");
  d = c;
  d.hidden_dim = 40;
  CHECK(error_of([&] { model::TensorParallelLayout::make(d, 4); }) ==
        "intermediate_size (40) is too small for tensor-parallel size 4: it is split in units of 16, so at most 3 ranks get a part");

  // Through the public API, on the real checkpoints.
  auto tiny = load(tiny_path());
  Context ctx(2);
  CHECK_THROWS_WITH_AS(Session(tiny, ctx, {.tp = 3}), doctest::Contains("num_key_value_heads (2) is not divisible by tensor-parallel size 3"),
                       UsageError);
  auto stories = load(stories_path());
  CHECK_THROWS_WITH_AS(Session(stories, ctx, {.tp = 3}),
                       "num_key_value_heads (4) is not divisible by tensor-parallel size 3", UsageError);
  CHECK_THROWS_WITH_AS(Session(stories, ctx, {.tp = 0}), "tp must be at least 1, got 0", UsageError);
  CHECK_THROWS_WITH_AS(Session(stories, ctx, {.tp = 2, .topology = "pack:1 core:1 pu:1"}), doctest::Contains("cannot place 2 ranks on 1 cores"),
                       UsageError);
}

TEST_CASE("tp 3 with uneven MLP and vocabulary splits, on a random model whose heads allow it") {
  // 6 query heads, 3 KV heads, MLP width 100 (units of 16: 48/32/20), vocabulary 200 (80/64/56).
  model::MistralConfig c;
  c.architecture = "llama";
  c.dim = 48, c.hidden_dim = 100, c.n_layers = 2, c.n_heads = 6, c.n_kv_heads = 3, c.head_dim = 8, c.vocab_size = 200;
  c.max_position = 64;
  std::mt19937 rng(11);
  std::vector<std::vector<float>> store;
  auto make = [&](std::int64_t rows, std::int64_t cols, bool norm = false) {
    std::vector<float> v(static_cast<std::size_t>(rows * cols));
    for (float& x : v) x = norm ? 1.0f + std::uniform_real_distribution<float>(-0.1f, 0.1f)(rng)
                                : std::uniform_real_distribution<float>(-0.2f, 0.2f)(rng);
    store.push_back(std::move(v));
    return rows == 1 && norm ? make_view_1d(store.back().data(), DType::F32, cols)
                             : make_view_2d(store.back().data(), DType::F32, rows, cols);
  };
  store.reserve(64);
  model::LoadedModel lm;
  lm.config = c;
  lm.source = "random";
  lm.weights.embedding = make(c.vocab_size, c.dim);
  lm.weights.final_norm = make(1, c.dim, true);
  lm.weights.lm_head = make(c.vocab_size, c.dim);
  for (int l = 0; l < c.n_layers; ++l) {
    model::LayerWeights L;
    L.attn_norm = make(1, c.dim, true);
    L.wq = make(c.q_dim(), c.dim);
    L.wk = make(c.kv_dim(), c.dim);
    L.wv = make(c.kv_dim(), c.dim);
    L.wo = make(c.dim, c.q_dim());
    L.ffn_norm = make(1, c.dim, true);
    L.w_gate = make(c.hidden_dim, c.dim);
    L.w_up = make(c.hidden_dim, c.dim);
    L.w_down = make(c.dim, c.hidden_dim);
    lm.weights.layers.push_back(L);
  }
  const auto tokens = some_tokens(10, c.vocab_size, 4);
  const int n = static_cast<int>(tokens.size());
  par::ExecContext ctx(2);
  model::KVCache cache(c, 32);
  model::ForwardState st(c, n, cache.capacity, 2);
  model::forward_block(c, lm.weights, ctx, cache, st, tokens.data(), n, 0, true);
  model::TensorParallelMistral tp(lm, {.tp = 3, .threads = 3, .topology = "pack:3 [numa] core:1 pu:1"});
  CHECK(tp.local_config(0).hidden_dim == 48);
  CHECK(tp.local_config(2).hidden_dim == 20);
  CHECK(tp.local_config(0).vocab_size == 80);
  CHECK(tp.local_config(2).vocab_size == 56);
  auto state = tp.make_state(1, 32, n);
  std::vector<float> out(static_cast<std::size_t>(n) * c.vocab_size);
  const model::TensorParallelMistral::Run run{.seq = 0, .first_row = 0, .n_rows = n, .pos0 = 0};
  tp.forward(*state, {&run, 1}, tokens.data(), n, true, out.data());
  const std::span<const float> want(st.logits.data(), out.size());
  expect_close(out, want, tp_tolerance(want));
  // Then token by token (one logits row: gathered straight into the output).
  model::KVCache cache1(c, 32);
  auto state1 = tp.make_state(1, 32, 1);
  std::vector<float> row(static_cast<std::size_t>(c.vocab_size));
  for (int i = 0; i < n; ++i) {
    const model::TensorParallelMistral::Run r1{.seq = 0, .first_row = 0, .n_rows = 1, .pos0 = i};
    tp.forward(*state1, {&r1, 1}, tokens.data() + i, 1, false, row.data());
  }
  const std::span<const float> last(st.logits.data() + static_cast<std::size_t>(n - 1) * c.vocab_size, row.size());
  expect_close(row, last, tp_tolerance(last));
}

TEST_CASE("BatchSession with tp 2: sequences decoded together give what each gives alone") {
  auto m = load(tiny_path());
  Context ctx(2);
  const std::vector<std::vector<std::int32_t>> prompts = {some_tokens(3, 512, 1), some_tokens(11, 512, 2), some_tokens(6, 512, 3)};
  std::vector<std::vector<float>> alone;
  for (const auto& p : prompts) {
    Session s(m, ctx);
    s.prefill(p);
    const auto l = s.decode(42);
    alone.emplace_back(l.begin(), l.end());
  }
  BatchSession b(m, ctx, {.max_sequences = 3, .tp = 2});
  std::vector<int> seqs;
  for (const auto& p : prompts) {
    seqs.push_back(b.open());
    b.prefill(seqs.back(), p);
  }
  const std::vector<std::int32_t> step(3, 42);
  const auto rows = b.decode(seqs, step);
  for (std::size_t i = 0; i < prompts.size(); ++i)
    expect_close(rows.subspan(i * 512, 512), alone[i], tp_tolerance(alone[i]));
}

TEST_CASE("weft shard: one file per rank, each rank reads only its own, logits as unsharded") {
  for (const std::string& path : {tiny_path(), stories_path()}) {
    CAPTURE(path);
    TempDir dir("shard");
    const ShardResult res = shard_model(path, {.world_size = 2, .output_dir = dir.path.string(),
                                               .tokenizer_path = path.ends_with(".bin") ? tok512() : std::string()});
    REQUIRE(res.files.size() == 2);
    CHECK(fs::exists(dir.path / "manifest.json"));
    CHECK(fs::exists(dir.path / "config.json"));
    CHECK(res.tokenizer.empty() == !path.ends_with(".bin"));

    auto m = load(path);
    auto sharded = Model::load(dir.path.string());
    CHECK(sharded->info().vocab_size == m->info().vocab_size);
    CHECK(sharded->info().weight_bytes == m->info().weight_bytes);
    const auto tokens = some_tokens(17, m->info().vocab_size, 8);
    const auto want = score(m, tokens, {.tp = 2});
    CHECK(score(sharded, tokens, {}) == want);  // the same shards, the same bits
    const auto flat = score(m, tokens, {});
    expect_close(score(sharded, tokens, {}), flat, tp_tolerance(flat));
    CHECK_THROWS_WITH_AS(score(sharded, tokens, {.tp = 4}), doctest::Contains("holds shards for tensor-parallel size 2, not 4"),
                         UsageError);
    if (path.ends_with(".bin")) {  // the tokenizer came along
      REQUIRE(sharded->tokenizer() != nullptr);
      CHECK(sharded->tokenizer()->encode("Once upon a time") == m->tokenizer()->encode("Once upon a time"));
    }

    // Rank r opens exactly files[r].
    const auto manifest = model::read_shard_manifest(dir.path.string());
    model::TensorParallelMistral tp(manifest, {.tp = 2, .threads = 2});
    for (int r = 0; r < 2; ++r) {
      REQUIRE(tp.files_read(r).size() == 1);
      CHECK(fs::path(tp.files_read(r)[0]) == fs::path(res.files[static_cast<std::size_t>(r)]));
    }
    // A broken rank-1 file is reported by rank 1 alone, naming that file.
    fs::resize_file(res.files[1], 16);
    const std::string err = error_of([&] { model::TensorParallelMistral again(manifest, {.tp = 2, .threads = 2}); });
    CHECK(err.find("rank-00001-of-00002.safetensors") != std::string::npos);
    CHECK(err.find("rank-00000") == std::string::npos);
  }
}

TEST_CASE("plan: per-rank bytes add up, and match what the tensor-parallel ranks hold") {
  for (const std::string& path : {tiny_path(), stories_path()}) {
    for (int n : {1, 2, 4}) {
      CAPTURE(path);
      CAPTURE(n);
      const TensorParallelPlan p = plan_tensor_parallel(path, {.world_size = n, .memory_per_rank = 1 << 20});
      std::uint64_t total = 0, sum = 0, replicated = 0, kv_copies = 0;
      for (const TensorPlan& t : p.tensors) {
        total += t.bytes;
        std::uint64_t parts = 0;
        for (auto b : t.rank_bytes) parts += b;
        if (t.strategy == "none") {
          replicated += t.bytes;
          CHECK(parts == t.bytes * static_cast<std::uint64_t>(n));
        } else if ((t.role == "attn.k" || t.role == "attn.v") && p.kv_copies > 1) {
          CHECK(parts == t.bytes * static_cast<std::uint64_t>(p.kv_copies));  // each KV head on kv_copies ranks
          kv_copies += t.bytes * static_cast<std::uint64_t>(p.kv_copies - 1);
        } else {
          CHECK(parts == t.bytes);
        }
      }
      for (auto b : p.rank_bytes) sum += b;
      CHECK(total == p.total_bytes);
      CHECK(replicated == p.replicated_bytes);
      CHECK(p.parallel_bytes + p.replicated_bytes == p.total_bytes);
      CHECK(kv_copies == p.kv_copy_bytes);
      CHECK(sum == p.total_bytes + p.replicated_bytes * static_cast<std::uint64_t>(n - 1) + p.kv_copy_bytes);
      CHECK(p.comm_bytes_per_token == (n > 1 ? 2ull * p.n_layers * p.dim * 4 + 4ull * p.vocab_size : 0));
      // The ranks' own shards are the plan's parallel bytes per rank.
      const model::LoadedModel lm = model::load_model(path, "");
      model::TensorParallelMistral tp(lm, {.tp = n, .threads = n, .topology = "pack:2 [numa] core:2 pu:1"});
      for (int r = 0; r < n; ++r) CHECK(tp.shard_bytes(r) + p.replicated_bytes == p.rank_bytes[static_cast<std::size_t>(r)]);
    }
  }
  // stories260K ties lm_head to the embedding: the plan lists the rows each rank copies.
  const TensorParallelPlan s = plan_tensor_parallel(stories_path(), {.world_size = 2});
  const auto lm_head = std::find_if(s.tensors.begin(), s.tensors.end(), [](const TensorPlan& t) { return t.role == "lm_head"; });
  REQUIRE(lm_head != s.tensors.end());
  CHECK(lm_head->tied);
  CHECK(lm_head->strategy == "column");
  CHECK_THROWS_WITH_AS(plan_tensor_parallel(tiny_path(), {.world_size = 3}),
                       doctest::Contains("num_key_value_heads (2) is not divisible by tensor-parallel size 3"), UsageError);
}

TEST_CASE("plan from a config alone: the Mistral-7B shape") {
  const fs::path cfg = fs::temp_directory_path() / ("weft_tp_7b_config_" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(cfg);
    out << R"({"architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
               "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
               "max_position_embeddings": 32768, "sliding_window": 4096})";
  }
  const TensorParallelPlan p = plan_tensor_parallel_from_config(cfg.string(), {.world_size = 2, .memory_per_rank = 4ull << 30});
  fs::remove(cfg);
  CHECK(p.tensors.size() == 3 + 9 * 32);
  CHECK(p.total_parameters == 7241732096ull);  // Mistral 7B v0.1
  CHECK(p.total_bytes == 2 * p.total_parameters);
  CHECK(p.comm_bytes_per_token == 2ull * 32 * 4096 * 4 + 32000 * 4);
  CHECK(p.suggested_world_size == 4);  // 14.5 GB of BF16 weights over ranks of 4 GiB
  CHECK(p.valid_world_sizes == std::vector<int>{1, 2, 4, 8, 16, 32});
  CHECK(p.parallel_percent > 98);
}
