// `weft plan`, `weft shard` and `--tp` as a user meets them: exit codes, messages, and a
// tensor-parallel run printing what the single-rank run prints.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "testing.hpp"

namespace fs = std::filesystem;
using weft::testing::shared_dir;

namespace {
using Result = weft::testing::CommandResult;
constexpr auto& run = weft::testing::run_command;  // a shell command line; stdout and stderr captured apart

std::string weft_bin() { return std::getenv("WEFT_BIN"); }
std::string tiny() { return (shared_dir() / "models" / "tiny-mistral").string(); }
std::string stories() { return (shared_dir() / "models" / "stories260K.bin").string(); }
std::string tok512() { return (shared_dir() / "models" / "tok512.bin").string(); }
fs::path temp(const std::string& name) { return fs::temp_directory_path() / ("weft_plan_" + name + "_" + std::to_string(::getpid())); }

std::vector<float> read_f32(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  in.seekg(0, std::ios::end);
  std::vector<float> v(static_cast<std::size_t>(in.tellg()) / 4);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  return v;
}
}  // namespace

TEST_CASE("weft plan: a table, JSON whose per-rank bytes add up, errors with exit codes") {
  const Result r = run(weft_bin() + " plan -m " + tiny() + " --world-size 2");
  CHECK(r.code == 0);
  CHECK(r.out.find("| model.layers.0.self_attn.q_proj.weight | attn.q | column | [64, 64] | BF16 |") != std::string::npos);
  CHECK(r.out.find("| model.layers.2.mlp.down_proj.weight | mlp.down | row |") != std::string::npos);
  CHECK(r.out.find("| model.embed_tokens.weight | embedding | none |") != std::string::npos);
  CHECK(r.out.find("suggested world size") != std::string::npos);

  const Result j = run(weft_bin() + " plan -m " + tiny() + " -w 4 --json --memory-per-rank 100000");
  REQUIRE(j.code == 0);
  const auto doc = nlohmann::json::parse(j.out);
  CHECK(doc["world_size"] == 4);
  std::uint64_t sum = 0;
  for (auto b : doc["rank_bytes"]) sum += b.get<std::uint64_t>();
  CHECK(sum == doc["total_bytes"].get<std::uint64_t>() + 3 * doc["replicated_bytes"].get<std::uint64_t>() +
                   doc["kv_copy_bytes"].get<std::uint64_t>());
  CHECK(doc["per_rank_heads"]["kv_copies"] == 2);
  CHECK(doc["tensors"].size() == 3 + 9 * 3);

  const Result bad = run(weft_bin() + " plan -m " + tiny() + " -w 3");
  CHECK(bad.code == 1);
  CHECK(bad.err.find("num_key_value_heads (2) is not divisible by tensor-parallel size 3") != std::string::npos);
  CHECK(run(weft_bin() + " plan -w 2").code == 1);                       // no model
  CHECK(run(weft_bin() + " plan -m " + tiny()).code == 1);               // no world size
  CHECK(run(weft_bin() + " plan -m " + tiny() + " -w 0").code == 1);     // out of range
  CHECK(run(weft_bin() + " plan -m /nonexistent/model -w 2").code == 2);  // bad input
}

TEST_CASE("weft plan --config: a shape without its weights") {
  const fs::path cfg = temp("config.json");
  {
    std::ofstream out(cfg);
    out << R"({"architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
               "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000})";
  }
  const Result r = run(weft_bin() + " plan --config " + cfg.string() + " -w 4 --memory-per-rank 4294967296");
  fs::remove(cfg);
  CHECK(r.code == 0);
  CHECK(r.out.find("total: 291 tensors, 7241732096 parameters") != std::string::npos);
  CHECK(r.out.find("suggested world size: 4") != std::string::npos);
}

TEST_CASE("--tp 2 prints the same greedy text as --tp 1, and a shard directory does too") {
  const std::string m = " -m " + stories() + " -z " + tok512() + " -p \"Once upon a time\" -n 40 --temp 0 -t 2";
  const Result one = run(weft_bin() + " generate" + m + " --tp 1");
  const Result two = run(weft_bin() + " generate" + m + " --tp 2");
  REQUIRE(one.code == 0);
  REQUIRE(two.code == 0);
  CHECK(one.out.size() > 40);
  CHECK(two.out == one.out);
  CHECK(two.err.find("in 2 tensor-parallel ranks") != std::string::npos);
  CHECK(run(weft_bin() + " generate" + m + " --tp 3").code == 1);

  const fs::path dir = temp("shards");
  fs::remove_all(dir);
  const Result sh = run(weft_bin() + " shard -m " + stories() + " -z " + tok512() + " -w 2 -o " + dir.string());
  REQUIRE(sh.code == 0);
  CHECK(sh.out.find("rank-00001-of-00002.safetensors") != std::string::npos);
  const Result from_dir = run(weft_bin() + " generate -m " + dir.string() + " -p \"Once upon a time\" -n 40 --temp 0 -t 2");
  CHECK(from_dir.code == 0);
  CHECK(from_dir.out == one.out);
  CHECK(run(weft_bin() + " generate -m " + dir.string() + " -p hi -n 2 --tp 4").code == 1);  // made for 2 ranks
  CHECK(run(weft_bin() + " shard -m " + dir.string() + " -w 2 -o " + temp("again").string()).code == 1);
  fs::remove_all(dir);

  CHECK(run(weft_bin() + " shard -m " + tiny() + " -w 3 -o " + dir.string()).code == 1);
  CHECK(!fs::exists(dir / "manifest.json"));
  CHECK(run(weft_bin() + " shard -m " + tiny() + " -w 2").code == 1);  // no output directory
  CHECK(run(weft_bin() + " shard -m /nonexistent -w 2 -o " + dir.string()).code == 2);
  fs::remove_all(dir);
}

TEST_CASE("weft score --tp 2 writes the logits of --tp 1 within 1e-5; WEFT_DEBUG=tp logs shards and traffic") {
  const fs::path a = temp("a.f32"), b = temp("b.f32");
  const std::string ids = "1,400,35,9,77,300,12,5,8,60,2,3";
  REQUIRE(run(weft_bin() + " score -m " + tiny() + " --tokens " + ids + " --logits-out " + a.string()).code == 0);
  const Result r = run("WEFT_DEBUG=tp " + weft_bin() + " score -m " + tiny() + " --tokens " + ids + " --logits-out " + b.string() +
                       " -t 2 --tp 2");
  REQUIRE(r.code == 0);
  // The row-parallel partial sums are added in another order than one rank's dot products: the
  // difference is float rounding, 1e-5 relative to the largest logit (about 1e-5 absolute here).
  const auto la = read_f32(a), lb = read_f32(b);
  double largest = 1;
  for (float x : la) largest = std::max(largest, static_cast<double>(std::fabs(x)));
  weft::testing::expect_close(lb, la, 1e-5 * largest);
  CHECK(r.err.find("weft: tp: rank 1 shards (every layer): wq [32, 64] wk [8, 64] wv [8, 64] wo [64, 32]") != std::string::npos);
  CHECK(r.err.find("rank 0 all-reduced 18432 B in 6 calls") != std::string::npos);  // 2 x 3 layers, 12 tokens x 64 floats each
  fs::remove(a);
  fs::remove(b);

  const Result bench = run(weft_bin() + " bench -m " + tiny() + " -p 8 -n 4 -r 1 -t 2 --tp 2");
  CHECK(bench.code == 0);
  CHECK(bench.out.find("tg4 tp2") != std::string::npos);
}
