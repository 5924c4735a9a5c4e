// The weft command line as a user meets it: exit codes, messages, output.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "testing.hpp"

namespace fs = std::filesystem;
using weft::testing::shared_dir;

namespace {
using Result = weft::testing::CommandResult;
constexpr auto& run = weft::testing::run_command;  // a shell command line; stdout and stderr captured apart

std::string weft_bin() { return std::getenv("WEFT_BIN"); }

// A default model written once per test run.
const fs::path& default_model() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("weft_cli_model_" + std::to_string(::getpid()));
    const Result r = run(std::string(std::getenv("WEFT_MAKE_MODEL")) + " -o " + d.string());
    REQUIRE(r.code == 0);
    return d;
  }();
  return dir;
}

struct Cleanup {
  ~Cleanup() { fs::remove_all(fs::temp_directory_path() / ("weft_cli_model_" + std::to_string(::getpid()))); }
} cleanup;
}  // namespace

TEST_CASE("--help everywhere, usage errors exit 1") {
  CHECK(run(weft_bin() + " --help").code == 0);
  for (const char* sub : {"generate", "tokenize", "score"}) {
    const Result r = run(weft_bin() + " " + sub + " --help");
    CAPTURE(sub);
    CHECK(r.code == 0);
    CHECK(r.out.find("Usage") != std::string::npos);
  }
  CHECK(run(weft_bin()).code == 1);
  CHECK(run(weft_bin() + " frobnicate").code == 1);
  const Result no_model = run(weft_bin() + " generate -p hi");
  CHECK(no_model.code == 1);
  CHECK(no_model.err.find("--model") != std::string::npos);
  const std::string m = " -m " + default_model().string();
  for (const char* bad : {" -p hi -n -5", " -p hi -t -1", " -p hi -t 100000", " -p hi --temp -1", " -p hi --top-p 2",
                          " -p hi -n abc", " -p hi --bogus"}) {
    CAPTURE(bad);
    const Result r = run(weft_bin() + " generate" + m + bad);
    CHECK(r.code == 1);
    CHECK_FALSE(r.err.empty());
  }
}

TEST_CASE("bad paths and files exit 2 with the path in the message") {
  const fs::path tmp = fs::temp_directory_path() / ("weft_cli_bad_" + std::to_string(::getpid()));
  fs::create_directories(tmp / "empty_dir");
  std::ofstream(tmp / "junk.bin") << "not a model";
  const std::pair<std::string, std::string> cases[] = {
      {" generate -m /nonexistent/model -p hi", "/nonexistent/model"},
      {" generate -m " + (tmp / "empty_dir").string() + " -p hi", "config.json"},
      {" generate -m " + (tmp / "junk.bin").string() + " -p hi", "junk.bin"},
      {" generate -m " + default_model().string() + " -z /nonexistent/tok.model -p hi", "/nonexistent/tok.model"},
      {" generate -m " + default_model().string() + " -z " + tmp.string() + " -p hi", "is a directory"},
      {" tokenize -z " + (tmp / "junk.bin").string() + " hi", "junk.bin"},
  };
  for (const auto& [args, needle] : cases) {
    CAPTURE(args);
    const Result r = run(weft_bin() + args);
    CHECK(r.code == 2);
    CHECK(r.err.find(needle) != std::string::npos);
    CHECK(r.err.find("weft: error:") != std::string::npos);
  }
  fs::remove_all(tmp);
}

TEST_CASE("generate on the default model: text on stdout, timings on stderr, same text at -t 1 and -t 2") {
  const std::string prefix = weft_bin() + " generate -m " + default_model().string() + " -p 'Once upon a time' --temp 0";
  const std::string base = prefix + " -n 24";
  const Result a = run(base + " -t 1");
  const Result b = run(base + " -t 2");
  REQUIRE(a.code == 0);
  REQUIRE(b.code == 0);
  CHECK(a.out.size() > 1);
  CHECK(a.out == b.out);
  CHECK(a.err.find("tokens/s") != std::string::npos);
  CHECK(a.out.find("tokens/s") == std::string::npos);
  const Result echo = run(base + " --echo");
  CHECK(echo.out.rfind("Once upon a time", 0) == 0);
  const Result zero = run(prefix + " -n 0");
  CHECK(zero.code == 0);
  CHECK(zero.out == "\n");
  // A sampled run is reproducible from its seed.
  const std::string sampled = weft_bin() + " generate -m " + default_model().string() + " -p hi -n 16 --temp 1 --seed 9";
  CHECK(run(sampled).out == run(sampled).out);
}

TEST_CASE("tokenize and score on the real checkpoints") {
  if (!weft::testing::have_shared()) {
    MESSAGE("SKIP: ../shared not found");
    return;
  }
  const auto models = shared_dir() / "models";
  const Result t = run(weft_bin() + " tokenize -z " + (models / "tokenizer.model").string() + " 'Hello world'");
  CHECK(t.code == 0);
  CHECK(t.out == "1,15043,3186\n");
  CHECK(run(weft_bin() + " tokenize -z " + (models / "tok512.bin").string() + " 'Once upon a time'").out == "1,403,407,261,378\n");

  const fs::path out = fs::temp_directory_path() / ("weft_cli_logits_" + std::to_string(::getpid()));
  const Result s = run(weft_bin() + " score -m " + (models / "tiny-mistral").string() + " --tokens 1,35,300,17 --logits-out " + out.string());
  CHECK(s.code == 0);
  CHECK(fs::file_size(out) == 4u * 512u * 4u);
  fs::remove(out);
  CHECK(run(weft_bin() + " score -m " + (models / "tiny-mistral").string() + " --tokens 1,x --logits-out " + out.string()).code == 1);
  const Result oob = run(weft_bin() + " score -m " + (models / "tiny-mistral").string() + " --tokens 1,9999 --logits-out " + out.string());
  CHECK(oob.code == 1);
  CHECK(oob.err.find("9999") != std::string::npos);

  const Result g = run(weft_bin() + " generate -m " + (models / "stories260K.bin").string() + " -z " +
                       (models / "tok512.bin").string() + " -p 'Once upon a time' -n 30 --temp 0");
  CHECK(g.code == 0);
  CHECK(g.out.rfind(", there was a little girl named Lily.", 0) == 0);
}

TEST_CASE("quantize: HF directory -> GGUF with progress and summary; generate runs it with the same text") {
  const fs::path out = fs::temp_directory_path() / ("weft_cli_q_" + std::to_string(::getpid()) + ".gguf");
  const Result q = run(weft_bin() + " quantize " + default_model().string() + " " + out.string() + " --type bf16");
  CHECK(q.code == 0);
  CAPTURE(q.err);
  CHECK(q.err.find("quantize: 100%") != std::string::npos);  // stderr is not a TTY here: periodic lines
  CHECK(q.err.find("quantize: wrote " + out.string()) != std::string::npos);
  CHECK(q.err.find("ratio") != std::string::npos);
  CHECK(q.out.empty());
  const std::string gen = " -p 'Once upon a time' --temp 0 -n 12";
  const Result a = run(weft_bin() + " generate -m " + out.string() + gen);
  const Result b = run(weft_bin() + " generate -m " + default_model().string() + gen);
  CHECK(a.code == 0);
  CHECK(a.out == b.out);
  CHECK(run(weft_bin() + " quantize --help").out.find("q4_k_m") != std::string::npos);
  const Result bad = run(weft_bin() + " quantize " + default_model().string() + " " + out.string() + " --type q9");
  CHECK(bad.code == 1);
  CHECK(bad.err.find("unknown type \"q9\"") != std::string::npos);
  fs::remove(out);
}

TEST_CASE("topo: this machine, a synthetic two-socket machine with ranks, and bad topologies") {
  const Result real = run(weft_bin() + " topo");
  CHECK(real.code == 0);
  CHECK(real.out.find("topology: this machine") != std::string::npos);
  CHECK(real.out.find("NUMA node 0") != std::string::npos);
  const Result real_tp = run(weft_bin() + " topo --tp 1 --json");
  CHECK(real_tp.code == 0);
  CHECK(real_tp.out.find("\"ranks\"") != std::string::npos);

  const Result syn = run(weft_bin() + " topo --topology 'pack:2 [numa] core:4 pu:1' --tp 2");
  CHECK(syn.code == 0);
  CHECK(syn.out.find("NUMA nodes: 2") != std::string::npos);
  CHECK(syn.out.find("rank 0: NUMA node 0, cores 0-3") != std::string::npos);
  CHECK(syn.out.find("rank 1: NUMA node 1, cores 4-7") != std::string::npos);

  const Result bad = run(weft_bin() + " topo --topology 'pack:2 [numa] core:lots'");
  CHECK(bad.code == 2);
  CHECK(bad.err.find("core:lots") != std::string::npos);
  const Result missing = run(weft_bin() + " topo --topology /nonexistent/topo.xml");
  CHECK(missing.code == 2);
  CHECK(missing.err.find("/nonexistent/topo.xml") != std::string::npos);
  const Result too_many = run(weft_bin() + " topo --topology 'pack:1 core:2 pu:1' --tp 3");
  CHECK(too_many.code == 1);
  CHECK(too_many.err.find("3 ranks") != std::string::npos);
  CHECK(run(weft_bin() + " topo --tp 0").code == 1);
}

TEST_CASE("generate --prompts-file: each prompt's text equals a run of that prompt alone, with and without --pp 2") {
  if (!weft::testing::have_shared()) {
    MESSAGE("SKIP: ../shared not found; this case needs its models");
    return;
  }
  const std::string tok = (shared_dir() / "models" / "tok512.bin").string();
  const std::vector<std::string> prompts = {"Once upon a time", "The cat sat on the mat", "Lily", "One day, Tom and Sam went"};
  const fs::path file = fs::temp_directory_path() / ("weft_cli_prompts_" + std::to_string(::getpid()));
  {
    std::ofstream out(file);
    for (const auto& p : prompts) out << p << "\n\n";  // blank lines are skipped
  }
  for (const std::string& model : {(shared_dir() / "models" / "stories260K.bin").string(),
                                  (shared_dir() / "models" / "tiny-mistral").string()}) {
    CAPTURE(model);
    const std::string base = weft_bin() + " generate -m " + model + " -z " + tok + " -n 24 --temp 0 -t 2";
    std::string alone;
    for (const auto& p : prompts) {
      const Result r = run(base + " -p '" + p + "'");
      REQUIRE(r.code == 0);
      alone += r.out;
    }
    for (const char* extra : {" --batch 3", " --batch 3 --pp 2", " --batch 1", " --batch 4 --pp 3 --micro-batches 2"}) {
      CAPTURE(extra);
      const Result r = run(base + " --prompts-file " + file.string() + extra);
      REQUIRE(r.code == 0);
      CHECK(r.out == alone);
      CHECK(r.err.find("tokens/s over all sequences") != std::string::npos);
    }
    const Result j = run(base + " --prompts-file " + file.string() + " --json");
    REQUIRE(j.code == 0);
    std::istringstream lines(j.out);
    std::string line;
    int index = 0;
    while (std::getline(lines, line)) {
      CHECK(line.find("\"index\":" + std::to_string(index)) != std::string::npos);
      CHECK(line.find("\"stop\":\"") != std::string::npos);
      ++index;
    }
    CHECK(index == static_cast<int>(prompts.size()));
  }
  CHECK(run(weft_bin() + " generate -m " + default_model().string() + " -p hi --pp 2").code == 1);
  const Result missing = run(weft_bin() + " generate -m " + default_model().string() + " --prompts-file /nonexistent/p.txt");
  CHECK(missing.code != 0);
  fs::remove(file);
}

TEST_CASE("bench --membw compares each decode repetition with the read bandwidth measured next to it") {
  const Result b = run(weft_bin() + " bench -m " + default_model().string() +
                       " -p 0 -n 4 -r 3 -t 1 --membw --membw-bytes 4194304 --json");
  REQUIRE(b.code == 0);
  const auto doc = nlohmann::json::parse(b.out);
  REQUIRE(doc["results"].size() == 1);
  const auto& tg = doc["results"][0];
  CHECK(tg["test"] == "tg4");
  const auto samples = tg["samples"].get<std::vector<double>>();
  const auto roofs = tg["read_bw_gbs_per_rep"].get<std::vector<double>>();
  const auto pcts = tg["pct_of_read_bw_per_rep"].get<std::vector<double>>();
  REQUIRE(samples.size() == 3);
  REQUIRE(roofs.size() == 3);
  REQUIRE(pcts.size() == 3);
  const double bytes = tg["bytes_per_token"].get<double>();
  for (int i = 0; i < 3; ++i) {
    CHECK(roofs[i] > 0);
    CHECK(pcts[i] == doctest::Approx(100.0 * samples[i] * bytes / 1e9 / roofs[i]));
  }
  auto sorted = pcts;
  std::sort(sorted.begin(), sorted.end());
  CHECK(tg["pct_of_read_bw"].get<double>() == doctest::Approx(sorted[1]));
  CHECK(tg["read_bw_gbs_before"].get<double>() > 0);
  CHECK(tg["membw"].size() == 2);  // the measurement before the tests, with and without huge pages
}

TEST_CASE("quantized GGUF: bench and generate with and without repacking (--no-repack)") {
  const fs::path q = fs::temp_directory_path() / ("weft_cli_q4_" + std::to_string(::getpid()) + ".gguf");
  REQUIRE(run(weft_bin() + " quantize " + default_model().string() + " " + q.string() + " --type q4_0").code == 0);
  const std::string m = " -m " + q.string();
  for (const std::string flag : {"", " --no-repack"}) {
    CAPTURE(flag);
    const Result b = run(weft_bin() + " bench" + m + " -p 8 -n 4 -r 1 -t 1 --json" + flag);
    REQUIRE(b.code == 0);
    const bool repack = flag.empty();
    CHECK(b.out.find(std::string("\"repack\": ") + (repack ? "true" : "false")) != std::string::npos);
    CHECK(b.out.find("\"tg4\"") != std::string::npos);
    const Result g = run(weft_bin() + " generate" + m + " -p 'the cat' -n 8 --ignore-eos" + flag);
    CHECK(g.code == 0);
    CHECK(!g.out.empty());
  }
  fs::remove(q);
}
