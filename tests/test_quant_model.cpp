// Fidelity of quantized models (issue 4): a checkpoint converted with quantize_model and run
// through the integer kernels, against the same checkpoint in f32, teacher-forced on fixed token
// sequences (every position sees the same history in both models).
//
// Bounds, and why:
// - tiny-mistral in Q8_0: see its test case (random weights with near-ties).
// - stories260K (real weights) in Q8_0: the top-1 token at >= 98% of the golden sequence's
//   positions and the mean cross-entropy of the golden text within 1% of f32 (the bar).
//   Measured: 98.0% (201 of 205; the rest are near-ties of the f32 model) and +0.24%.
// - stories260K in Q4_0 (4 bits for a 260K-parameter model, whose few weights each matter):
//   measured 84.9% top-1 and +18.6% cross-entropy; the test asks >= 80% and <= +25%.
//   Its k-quant matrices cannot be tested there: rows of 64 or 172 values are not whole 256-value
//   blocks, so quantize_model falls back to Q8_0 for them.
// - The k-quants on the default model (random weights, widths 256/768): logits are compared by
//   relative RMS error, which follows each format's per-weight error (RMS on N(0,1) weights: Q8_0
//   0.0053, Q6_K 0.018, Q4_K 0.072, Q4_0 0.085, tests/test_quant.cpp); random weights leave small
//   top-1 margins and amplify errors, so top-1 agreement there says little. Measured relative RMS:
//   Q8_0 0.030, Q6_K 0.075, Q4_K 0.29, Q4_K_M 0.30, Q4_0 0.34; bounds are about 1.3x those, and
//   the order of the formats must hold.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>
#include <weft/quantize.hpp>
#include <weft/weft.hpp>

#include "testing.hpp"

namespace fs = std::filesystem;
using weft::testing::shared_dir;

namespace {
fs::path tmp(const std::string& name) { return fs::temp_directory_path() / ("weft_qm_" + std::to_string(::getpid()) + "_" + name); }

std::vector<float> score(const std::string& path, const std::vector<std::int32_t>& ids, bool repack = true, int tp = 1) {
  auto model = weft::Model::load(path, {.tokenizer_path = {}, .mmap = true, .repack = repack});
  weft::Context ctx(2);
  weft::Session s(model, ctx, {.context = static_cast<int>(ids.size()), .tp = tp});
  std::vector<float> logits(ids.size() * static_cast<std::size_t>(model->info().vocab_size));
  s.score(ids, logits);
  return logits;
}

struct Compare {
  double top1 = 0;      // fraction of positions with the same argmax
  double abs_rms = 0;   // RMS(logits - ref)
  double worst_flip_margin = 0;  // the largest top-2 margin of ref at a position whose argmax changed
  double ce = 0;        // mean cross-entropy of ids[i + 1] after position i
  double rel_rms = 0;   // RMS(logits - ref) / RMS(ref)
};

Compare compare(const std::vector<float>& l, const std::vector<float>& ref, const std::vector<std::int32_t>& ids) {
  const std::size_t n = ids.size(), vocab = l.size() / n;
  Compare c;
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float* a = l.data() + i * vocab;
    const float* b = ref.data() + i * vocab;
    std::size_t am = 0, bm = 0;
    for (std::size_t v = 0; v < vocab; ++v) {
      if (a[v] > a[am]) am = v;
      if (b[v] > b[bm]) bm = v;
      err += (a[v] - b[v]) * static_cast<double>(a[v] - b[v]);
      norm += b[v] * static_cast<double>(b[v]);
    }
    c.top1 += am == bm;
    if (am != bm) {
      float second = -INFINITY;
      for (std::size_t v = 0; v < vocab; ++v)
        if (v != bm) second = std::max(second, b[v]);
      c.worst_flip_margin = std::max(c.worst_flip_margin, static_cast<double>(b[bm] - second));
    }
    if (i + 1 < n) {
      double lse = 0;
      for (std::size_t v = 0; v < vocab; ++v) lse += std::exp(static_cast<double>(a[v]) - a[am]);
      c.ce += std::log(lse) + a[am] - a[static_cast<std::size_t>(ids[i + 1])];
    }
  }
  c.top1 /= static_cast<double>(n);
  c.ce /= static_cast<double>(n - 1);
  c.rel_rms = std::sqrt(err / norm);
  c.abs_rms = std::sqrt(err / static_cast<double>(l.size()));
  return c;
}

// The largest relative RMS difference of one position's logits (l against ref, n positions).
double worst_position(const std::vector<float>& l, const std::vector<float>& ref, std::size_t n) {
  const std::size_t vocab = l.size() / n;
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double err = 0, norm = 0;
    for (std::size_t v = i * vocab; v < (i + 1) * vocab; ++v) {
      err += (l[v] - ref[v]) * static_cast<double>(l[v] - ref[v]);
      norm += ref[v] * static_cast<double>(ref[v]);
    }
    worst = std::max(worst, std::sqrt(err / norm));
  }
  return worst;
}

// The default model (weft-make-model: random weights, vocabulary 512) written to a temporary directory.
fs::path default_model(const std::string& name) {
  const char* make = std::getenv("WEFT_MAKE_MODEL");
  REQUIRE(make != nullptr);
  const fs::path dir = tmp(name);
  REQUIRE(std::system((std::string(make) + " -o " + dir.string() + " >/dev/null").c_str()) == 0);
  return dir;
}

// BOS then n - 1 random ids of the default model's vocabulary.
std::vector<std::int32_t> random_ids(unsigned seed, int n) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> ids{1};
  for (int i = 1; i < n; ++i) ids.push_back(std::uniform_int_distribution<std::int32_t>(3, 511)(rng));
  return ids;
}

std::string quantize(const std::string& in, const std::string& type) {
  const fs::path out = tmp(type + ".gguf");
  weft::QuantizeOptions o;
  o.type = type;
  weft::quantize_model(in, out.string(), o);
  return out.string();
}
}  // namespace

TEST_CASE("stories260K: Q8_0 keeps the top-1 token at >= 98% of positions and the cross-entropy within 1%") {
  std::ifstream in(shared_dir() / "golden" / "stories260K_greedy.json");
  const auto g = nlohmann::json::parse(in);
  std::vector<std::int32_t> ids = g["prompt_ids"].get<std::vector<std::int32_t>>();
  for (int id : g["greedy_ids"]) ids.push_back(id);
  const std::string src = (shared_dir() / "models" / "stories260K.gguf").string();  // llama.cpp's F32 file
  const auto ref = score(src, ids);
  const Compare base = compare(ref, ref, ids);

  const std::string q8 = quantize(src, "q8_0");
  const Compare c8 = compare(score(q8, ids), ref, ids);
  MESSAGE("stories260K Q8_0: top-1 " << c8.top1 * 100 << "%, cross-entropy " << c8.ce << " vs " << base.ce << " ("
                                     << (c8.ce / base.ce - 1) * 100 << "%)");
  CHECK(c8.top1 >= 0.98);
  CHECK(std::fabs(c8.ce / base.ce - 1) <= 0.01);

  const std::string q4 = quantize(src, "q4_0");
  const Compare c4 = compare(score(q4, ids), ref, ids);
  MESSAGE("stories260K Q4_0: top-1 " << c4.top1 * 100 << "%, cross-entropy " << c4.ce << " ("
                                     << (c4.ce / base.ce - 1) * 100 << "%)");
  CHECK(c4.top1 >= 0.80);
  CHECK(c4.ce / base.ce - 1 <= 0.25);
  fs::remove(q8);
  fs::remove(q4);
}

TEST_CASE("tiny-mistral: Q8_0 changes the top-1 token only at near-ties of the f32 model") {
  // Both golden sequences (24 fed tokens; the greedy prompt and its 40 ids). tiny-mistral has
  // random weights, whose logits have near-ties: after token 2 of both sequences the f32 model's
  // top two logits differ by 0.02. Q8_0's weight rounding alone (dequantized weights, f32
  // activations) flips 3 of the 68 positions, so the 98% is out of reach for any Q8_0
  // file here; measured with weft's integer kernels: 5 of 68 (92.6%). What must hold: every flip
  // is a near-tie, a top-2 margin within 4x the RMS logit error (0.19 here), and >= 90% agree.
  std::ifstream in(shared_dir() / "golden" / "tiny-mistral.json");
  const auto g = nlohmann::json::parse(in);
  std::vector<std::int32_t> greedy = g["greedy_prompt"].get<std::vector<std::int32_t>>();
  for (int id : g["greedy_ids"]) greedy.push_back(id);
  const std::string src = (shared_dir() / "models" / "tiny-mistral").string();
  const std::string q8 = quantize(src, "q8_0");
  double agree = 0, positions = 0;
  for (const auto& ids : {g["tokens"].get<std::vector<std::int32_t>>(), greedy}) {
    const auto ref = score(src, ids);
    const Compare c = compare(score(q8, ids), ref, ids);
    MESSAGE("tiny-mistral Q8_0: top-1 " << c.top1 * 100 << "% of " << ids.size() << " positions, RMS logit error "
                                        << c.abs_rms << ", largest margin flipped " << c.worst_flip_margin);
    CHECK(c.worst_flip_margin <= 4 * c.abs_rms);
    agree += c.top1 * static_cast<double>(ids.size());
    positions += static_cast<double>(ids.size());
  }
  CHECK(agree / positions >= 0.90);
  fs::remove(q8);
}

TEST_CASE("k-quants on the default model: logit error follows each format's weight error") {
  const fs::path dir = default_model("default");
  const std::vector<std::int32_t> ids = random_ids(1, 128);
  const auto ref = score(dir.string(), ids);
  struct Case {
    const char* type;
    double bound;
  };
  std::map<std::string, double> err;
  for (const Case k : {Case{"q8_0", 0.045}, Case{"q6_k", 0.11}, Case{"q4_k_m", 0.39}, Case{"q4_k", 0.40}, Case{"q4_0", 0.48}}) {
    CAPTURE(std::string(k.type));
    const std::string q = quantize(dir.string(), k.type);
    const Compare c = compare(score(q, ids), ref, ids);
    MESSAGE("default model " << std::string(k.type) << ": relative RMS logit error " << c.rel_rms << ", top-1 " << c.top1 * 100 << "%");
    CHECK(c.rel_rms <= k.bound);
    err[k.type] = c.rel_rms;
    fs::remove(q);
  }
  CHECK(err["q8_0"] < err["q6_k"]);
  CHECK(err["q6_k"] < err["q4_k"]);
  CHECK(err["q4_k"] < err["q4_0"]);
  CHECK(err["q4_k_m"] < err["q4_k"] * 1.05);  // the Q6_K matrices do not make it worse than noise
  fs::remove_all(dir);
}

TEST_CASE("quantized weights in the kernels' interleaved layout give the file layout's logits, with tp too") {
  // Model::load repacks Q8_0/Q4_0/Q4_K matrices when the kernels read them interleaved
  // (AVX512-VNNI); elsewhere both loads are the same. Each matrix product then differs only by
  // f32 summation order (~1e-7 relative, tests/test_kernels_isa.cpp), but the next layer quantizes
  // its input to int8 again, and an activation that lands on a rounding boundary in one layout and
  // not the other moves by a quantization step; through the KV cache every later position moves
  // too (seen: Q8_0 equal to 1e-7 at positions 0-15, then 1.1-1.6e-2 apart, 40-60% of the
  // quantization's own error). One flipped rounding cannot move a position further than all the
  // quantization's roundings together, so no position may differ by more than that; a wrong tile
  // or row gives errors as large as the logits themselves, at every position.
  const fs::path dir = default_model("il");
  const std::vector<std::int32_t> ids = random_ids(2, 41);
  const auto ref = score(dir.string(), ids);
  for (const char* type : {"q8_0", "q4_0", "q4_k_m"}) {
    CAPTURE(std::string(type));
    const std::string q = quantize(dir.string(), type);
    const auto plain = score(q, ids, false);
    const double quant_err = compare(plain, ref, ids).rel_rms;
    const auto il = score(q, ids, true);
    const Compare c = compare(il, plain, ids);
    const double worst = worst_position(il, plain, ids.size());
    MESSAGE(std::string(type) << ": interleaved vs file layout, relative RMS " << c.rel_rms << ", worst position "
                              << worst << " (the quantization's own: " << quant_err << ")");
    CHECK(worst <= quant_err);
    if (std::string(type) != "q4_k_m") {  // Q4_K rows of 256 cannot be split in two here
      const auto il2 = score(q, ids, true, 2);
      const double t = worst_position(il2, score(q, ids, false, 2), ids.size());
      MESSAGE(std::string(type) << ": the same with tp 2, worst position: " << t);
      CHECK(t <= quant_err);
    }
    fs::remove(q);
  }
  fs::remove_all(dir);
}
