// The error matrix (issue 8): bad files, bad flags and odd requests given to the `weft` binary.
// Each case must end with exit code 1 (usage) or 2 (bad input), never a signal or a hang, within a
// few seconds, with a message that names the file (or flag) and what is wrong. A few rows are
// requests with a defined non-error answer (an empty prompt); they say so.
//
// The files are made here: the default model from weft-make-model, a tiny llama2.c checkpoint and
// tokenizer.bin written byte by byte, and (when ../shared exists) cut or corrupted copies of the
// real files, written into a temporary directory at run time.
//
// Cases already in other suites are not repeated: parser-level messages for every malformed
// safetensors header (test_io.cpp), config keys (test_config.cpp), protobuf fields
// (test_tokenizer_unit.cpp), and `-n 0`, `-n -5`, `-t -1`, `--temp -1`, `--top-p 2`, a missing
// model path, `-z DIR` (test_cli.cpp).
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "testing.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Result = weft::testing::CommandResult;

const fs::path& tmp_root() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("weft_errors_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

struct Cleanup {
  ~Cleanup() {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("weft_errors_" + std::to_string(::getpid())), ec);
  }
} cleanup;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `weft ARGS` under a 60 s `timeout` (a hang becomes exit 124, which fails the case).
// `runner` goes before the binary (e.g. a command that drops root's privileges).
Result run_weft(const std::string& args, const std::string& runner = "") {
  return weft::testing::run_command("timeout 60 " + runner + quote(std::getenv("WEFT_BIN")) + " " + args);
}

// The matrix row: exit code `code`, a "weft: error:" line containing every needle, quickly.
void expect_error(const std::string& args, int code, const std::vector<std::string>& needles,
                  const std::string& runner = "") {
  CAPTURE(args);
  const Result r = run_weft(args, runner);
  CAPTURE(r.err);
  CHECK(r.code == code);
  // Flag parsing errors come from CLI11 ("--top-k: Value -1 not in range ..."); the rest from weft.
  if (code == 2) CHECK(r.err.find("weft: error:") != std::string::npos);
  CHECK_FALSE(r.err.empty());
  for (const std::string& needle : needles) {
    CAPTURE(needle);
    CHECK(r.err.find(needle) != std::string::npos);
  }
  CHECK(r.out.empty());
  CHECK(r.seconds < 10.0);
  MESSAGE("weft " << args << "  -> exit " << r.code << ": " << r.err.substr(0, r.err.find('\n')));
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

// The default model (config.json, model.safetensors, tokenizer.model), written once per run.
const fs::path& default_model() {
  static const fs::path dir = [] {
    const fs::path d = tmp_root() / "default";
    const std::string cmd = quote(std::getenv("WEFT_MAKE_MODEL")) + " -o " + d.string() + " >/dev/null 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return d;
  }();
  return dir;
}

// A copy of the default model under `name`, for one case to break.
fs::path model_copy(const std::string& name) {
  const fs::path d = tmp_root() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"})
    fs::copy_file(default_model() / f, d / f);
  return d;
}

// Splits a safetensors file into its header and its data section.
std::pair<json, std::string> split_safetensors(const fs::path& p) {
  const std::string bytes = read_bytes(p);
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// Pads the header with spaces so that the data starts 8-aligned, as weft's writer and the
// reference implementation do (these cases test their own fault, not alignment).
void join_safetensors(const fs::path& p, std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  write_bytes(p, le64(header.size()) + header + data);
}

// A llama2.c checkpoint (no sliding window) with the given header; float i after the header is
// a small deterministic value. Layout as in io/llama2c.hpp.
std::string llama2c_bytes(std::int32_t dim, std::int32_t hidden, std::int32_t layers, std::int32_t heads,
                          std::int32_t kv_heads, std::int32_t vocab, std::int32_t seq) {
  const std::size_t d = dim, h = hidden, L = layers, head = dim / heads, kv = head * kv_heads;
  const std::size_t n = vocab * d + L * d + L * d * d + 2 * L * kv * d + L * d * d + L * d + 3 * L * h * d + d + seq * head;
  const std::int32_t header[7] = {dim, hidden, layers, heads, kv_heads, vocab, seq};
  std::string b(reinterpret_cast<const char*>(header), sizeof header);
  for (std::size_t i = 0; i < n; ++i) {
    const float f = 0.05f * static_cast<float>(static_cast<int>(i * 37 % 19) - 9);
    b.append(reinterpret_cast<const char*>(&f), 4);
  }
  return b;
}

// The small one most cases use: dim 8, hidden 16, 1 layer, 2 heads, 1 KV head, vocab 262, seq_len 32.
struct TinyLlama2c {
  static std::string bytes() { return llama2c_bytes(8, 16, 1, 2, 1, 262, 32); }
  // Offsets (in floats, after the header) of the final norm and of token 1's embedding row.
  static std::size_t final_norm() { return (bytes().size() - 28) / 4 - 32 * 4 - 8; }
  static std::size_t bos_row() { return 8; }
};

// A llama2.c tokenizer.bin: <unk>, <s>, </s>, the 256 byte pieces, then " a", "b", " ab".
std::string tiny_tokenizer_bin() {
  std::string b;
  const auto put32 = [&](std::uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); };
  const auto piece = [&](const std::string& text, float score) {
    std::uint32_t bits;
    std::memcpy(&bits, &score, 4);
    put32(bits);
    put32(static_cast<std::uint32_t>(text.size()));
    b += text;
  };
  put32(8);
  piece("<unk>", 0);
  piece("\n<s>\n", 0);
  piece("\n</s>\n", 0);
  for (int i = 0; i < 256; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", i);
    piece(name, 0);
  }
  piece(" a", -1);
  piece("b", -2);
  piece(" ab", -3);
  return b;
}

void set_float(std::string& bytes, std::size_t float_index_after_header, float value) {
  std::memcpy(bytes.data() + 28 + 4 * float_index_after_header, &value, 4);
}

// Sets element i of a safetensors tensor (its header entry, the data section) to +Inf.
void set_inf(const json& entry, std::string& data, std::size_t i) {
  const std::size_t begin = entry["data_offsets"][0].get<std::size_t>();
  const std::string dtype = entry["dtype"];
  if (dtype == "F32") {
    const float inf = std::numeric_limits<float>::infinity();
    std::memcpy(data.data() + begin + 4 * i, &inf, 4);
  } else {
    const std::uint16_t bits = dtype == "BF16" ? 0x7f80 : 0x7c00;  // +Inf in BF16 / F16
    std::memcpy(data.data() + begin + 2 * i, &bits, 2);
  }
}

std::string shared_model(const std::string& name) {
  return (weft::testing::shared_dir() / "models" / name).string();
}

}  // namespace

TEST_CASE("truncated files at several offsets: safetensors, llama2.c .bin, tokenizer.model, tokenizer.bin") {
  // safetensors: inside the length, inside the JSON, at the data start, inside a tensor, one short.
  const std::string whole = read_bytes(default_model() / "model.safetensors");
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, whole.data(), 8);
  const std::size_t data = 8 + header_len;
  const std::vector<std::pair<std::size_t, std::string>> st_cuts = {
      {0, "shorter than the 8-byte header length"},
      {5, "shorter than the 8-byte header length"},
      {8 + header_len / 2, "header length"},
      {data, "truncated file?"},
      {data + 1000, "truncated file?"},
      {whole.size() - 1, "truncated file?"}};
  for (const auto& [size, what] : st_cuts) {
    const fs::path d = model_copy("st_cut_" + std::to_string(size));
    write_bytes(d / "model.safetensors", whole.substr(0, size));
    expect_error("generate -m " + d.string() + " -p hi -n 1", 2, {(d / "model.safetensors").string(), what});
  }

  // llama2.c checkpoint: inside the header, right after it, mid-weights, one float short.
  const fs::path tok = tmp_root() / "tiny_tok.bin";
  write_bytes(tok, tiny_tokenizer_bin());
  const std::string ck = TinyLlama2c::bytes();
  for (const std::size_t size : {std::size_t{0}, std::size_t{13}, std::size_t{28}, ck.size() / 2, ck.size() - 4}) {
    const fs::path p = tmp_root() / ("cut_" + std::to_string(size) + ".bin");
    write_bytes(p, ck.substr(0, size));
    expect_error("generate -m " + p.string() + " -z " + tok.string() + " -p hi -n 1", 2, {p.string(), "truncated"});
  }
  // Longer than its header says: not silently ignored either.
  const fs::path longer = tmp_root() / "longer.bin";
  write_bytes(longer, ck + "xxxx");
  expect_error("generate -m " + longer.string() + " -z " + tok.string() + " -p hi -n 1", 2, {longer.string(), "extra data"});

  // tokenizer.model of the default model, cut inside pieces and inside the trailing specs.
  const std::string spm = read_bytes(default_model() / "tokenizer.model");
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{7}, spm.size() / 2, spm.size() - 3}) {
    const fs::path d = model_copy("spm_cut_" + std::to_string(size));
    write_bytes(d / "tokenizer.model", spm.substr(0, size));
    expect_error("generate -m " + d.string() + " -p hi -n 1", 2, {(d / "tokenizer.model").string()});
  }

  // tokenizer.bin: inside max_token_length, inside a score, inside a piece's bytes.
  const std::string tb = tiny_tokenizer_bin();
  for (const std::size_t size : {std::size_t{2}, std::size_t{6}, std::size_t{14}, tb.size() - 1}) {
    const fs::path p = tmp_root() / ("tok_cut_" + std::to_string(size) + ".bin");
    write_bytes(p, tb.substr(0, size));
    expect_error("tokenize -z " + p.string() + " hi", 2, {p.string()});
  }
}

TEST_CASE("truncated real files (../shared, cut copies written here)") {
  if (!weft::testing::have_shared()) {
    MESSAGE("SKIP: ../shared not found");
    return;
  }
  const std::string stories = read_bytes(shared_model("stories260K.bin"));
  for (const std::size_t size : {std::size_t{20}, std::size_t{4096}, stories.size() - 1}) {
    const fs::path p = tmp_root() / ("stories_cut_" + std::to_string(size) + ".bin");
    write_bytes(p, stories.substr(0, size));
    expect_error("generate -m " + p.string() + " -z " + shared_model("tok512.bin") + " -p hi -n 1", 2,
                 {p.string(), "truncated"});
  }
  for (const char* name : {"tokenizer.model", "tokenizer.bin"}) {
    const std::string bytes = read_bytes(shared_model(name));
    for (const std::size_t size : {std::size_t{3}, bytes.size() / 3, bytes.size() - 2}) {
      const fs::path p = tmp_root() / ("cut_" + std::to_string(size) + "_" + name);
      write_bytes(p, bytes.substr(0, size));
      expect_error("tokenize -z " + p.string() + " hi", 2, {p.string()});
    }
  }
}

TEST_CASE("hostile safetensors headers reach the CLI as exit 2 naming the file and tensor") {
  const auto [header, data] = split_safetensors(default_model() / "model.safetensors");
  const std::string emb = "model.embed_tokens.weight";
  REQUIRE(header.contains(emb));
  const auto other = [&] {
    for (const auto& [name, v] : header.items())
      if (name != emb && name != "__metadata__" && v["data_offsets"][0] != 0) return name;
    return std::string();
  }();

  struct Case {
    std::string name;
    std::function<std::string()> make;  // the new model.safetensors bytes
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"header length larger than the file",
       [&] { return le64(header.dump().size() + data.size() + 1) + header.dump() + data; }, {"header length"}},
      {"header length 2^64-1", [&] { return le64(~std::uint64_t{0}) + header.dump(); }, {"header length"}},
      {"header is a JSON array", [&] { return le64(5) + "[1,2]"; }, {"header is not a JSON object"}},
      {"header is a JSON string", [&] { return le64(3) + "\"x\""; }, {"header is not a JSON object"}},
      {"header is not JSON", [&] { return le64(4) + "{{{{"; }, {"not valid JSON"}},
      {"tensor offsets past the end",
       [&] {
         json h = header;
         const std::uint64_t end = data.size() + 64, size = h[emb]["data_offsets"][1].get<std::uint64_t>() -
                                                            h[emb]["data_offsets"][0].get<std::uint64_t>();
         h[emb]["data_offsets"] = {end - size, end};
         return le64(h.dump().size()) + h.dump() + data;
       },
       {"tensor " + emb, "data ends at byte"}},
      {"overlapping tensors",
       [&] {
         json h = header;
         h[other]["data_offsets"][0] = h[other]["data_offsets"][0].get<std::uint64_t>() - 2;
         h[other]["data_offsets"][1] = h[other]["data_offsets"][1].get<std::uint64_t>() - 2;
         return le64(h.dump().size()) + h.dump() + data;
       },
       {"overlaps tensor"}},
      {"dtype F64 (a real safetensors dtype weft does not read)",
       [&] {
         json h = header;
         h[emb]["dtype"] = "F64";
         return le64(h.dump().size()) + h.dump() + data;
       },
       {"unsupported dtype F64 for tensor " + emb}},
      {"dtype that does not exist",
       [&] {
         json h = header;
         h[emb]["dtype"] = "float32";
         return le64(h.dump().size()) + h.dump() + data;
       },
       {"unknown dtype float32 for tensor " + emb}},
      {"shape that disagrees with the byte count",
       [&] {
         json h = header;
         h[emb]["shape"][0] = h[emb]["shape"][0].get<std::int64_t>() + 1;
         return le64(h.dump().size()) + h.dump() + data;
       },
       {"tensor " + emb, "bytes, but data_offsets"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const fs::path d = model_copy("hostile");
    write_bytes(d / "model.safetensors", c.make());
    std::vector<std::string> needles = c.needles;
    needles.push_back((d / "model.safetensors").string());
    expect_error("generate -m " + d.string() + " -p hi -n 1", 2, needles);
  }
}

TEST_CASE("config.json: not an object, wrong types, and a shape that disagrees with the tensors") {
  const fs::path d = model_copy("config");
  const fs::path cfg = d / "config.json";
  const json good = json::parse(read_bytes(cfg));
  write_bytes(cfg, "[\"MistralForCausalLM\"]");
  expect_error("generate -m " + d.string() + " -p hi -n 1", 2, {cfg.string(), "expected a JSON object"});
  write_bytes(cfg, "");
  expect_error("generate -m " + d.string() + " -p hi -n 1", 2, {cfg.string(), "not valid JSON"});
  // A number JSON can write but a double cannot hold (found by fuzz_config).
  write_bytes(cfg, good.dump().substr(0, good.dump().size() - 1) + ",\"rope_theta\": 1e400}");
  expect_error("generate -m " + d.string() + " -p hi -n 1", 2, {cfg.string(), "not valid JSON"});

  // Shape/config mismatch: the tensors are for another width, named with file and expected shape.
  json wide = good;
  wide["intermediate_size"] = good["intermediate_size"].get<int>() * 2;
  write_bytes(cfg, wide.dump());
  expect_error("generate -m " + d.string() + " -p hi -n 1", 2,
               {(d / "model.safetensors").string(), "has shape", "from config.json"});
  json fewer = good;
  fewer["num_hidden_layers"] = good["num_hidden_layers"].get<int>() - 1;
  write_bytes(cfg, fewer.dump());
  expect_error("generate -m " + d.string() + " -p hi -n 1", 2, {"unknown tensor model.layers."});
  // More layers than the checkpoint holds (absurdly many: refused before the layer table is sized).
  for (int layers : {good["num_hidden_layers"].get<int>() + 1, 1000000000}) {
    json more = good;
    more["num_hidden_layers"] = layers;
    write_bytes(cfg, more.dump());
    expect_error("generate -m " + d.string() + " -p hi -n 1", 2, {"num_hidden_layers = " + std::to_string(layers), "is missing"});
  }
  json vocab = good;
  vocab["vocab_size"] = 100;  // smaller than the tokenizer
  write_bytes(cfg, vocab.dump());
  expect_error("generate -m " + d.string() + " -p hi -n 1", 2, {"has shape"});
}

TEST_CASE("NaN/Inf weights are refused, never turned into text") {
  // Decision: norms are scanned at load (a few KB; the message names the tensor); anything else
  // non-finite is caught on the logits of the step it poisons, which fails with exit 2.
  const fs::path tok = tmp_root() / "nan_tok.bin";
  write_bytes(tok, tiny_tokenizer_bin());
  std::string norm = TinyLlama2c::bytes();
  set_float(norm, TinyLlama2c::final_norm() + 3, std::numeric_limits<float>::quiet_NaN());
  const fs::path norm_path = tmp_root() / "nan_norm.bin";
  write_bytes(norm_path, norm);
  expect_error("generate -m " + norm_path.string() + " -z " + tok.string() + " -p hi -n 4", 2,
               {norm_path.string(), "model.norm.weight", "NaN", "index 3"});

  std::string emb = TinyLlama2c::bytes();
  set_float(emb, TinyLlama2c::bos_row() + 1, std::numeric_limits<float>::infinity());
  const fs::path emb_path = tmp_root() / "inf_embedding.bin";
  write_bytes(emb_path, emb);
  expect_error("generate -m " + emb_path.string() + " -z " + tok.string() + " -p hi -n 4", 2,
               {emb_path.string(), "non-finite logit"});
  expect_error("score -m " + emb_path.string() + " --tokens 1,2 --logits-out " + (tmp_root() / "l.f32").string(), 2,
               {emb_path.string(), "non-finite logit"});

  // A safetensors model with an Inf in a layer norm (F32 in the default model).
  const fs::path d = model_copy("nan_st");
  auto [header, data] = split_safetensors(d / "model.safetensors");
  const std::string name = "model.layers.1.post_attention_layernorm.weight";
  REQUIRE(header.contains(name));
  set_inf(header[name], data, 5);
  join_safetensors(d / "model.safetensors", header.dump(), data);
  expect_error("generate -m " + d.string() + " -p hi -n 1", 2,
               {(d / "model.safetensors").string(), name, "Inf", "index 5"});

  if (weft::testing::have_shared()) {
    // tiny-mistral (BF16): an Inf in the final norm is refused at load ...
    const fs::path tm = tmp_root() / "tiny-mistral-nan";
    fs::create_directories(tm);
    fs::copy_file(shared_model("tiny-mistral/config.json"), tm / "config.json");
    auto [h0, bytes0] = split_safetensors(shared_model("tiny-mistral/model.safetensors"));
    set_inf(h0["model.norm.weight"], bytes0, 0);
    join_safetensors(tm / "model.safetensors", h0.dump(), bytes0);
    expect_error("score -m " + tm.string() + " --tokens 1,5,6 --logits-out " + (tmp_root() / "l.f32").string(), 2,
                 {"model.norm.weight", "Inf", "index 0"});
    // ... and a NaN in the embedding row of token 5 stops the step that reads it.
    auto [h, bytes] = split_safetensors(shared_model("tiny-mistral/model.safetensors"));
    const std::size_t row = h["model.embed_tokens.weight"]["data_offsets"][0].get<std::size_t>() + 5 * 64 * 2;
    bytes[row] = '\xc1';
    bytes[row + 1] = '\x7f';  // bf16 0x7fc1: NaN
    join_safetensors(tm / "model.safetensors", h.dump(), bytes);
    expect_error("score -m " + tm.string() + " --tokens 1,5,6 --logits-out " + (tmp_root() / "l.f32").string(), 2,
                 {tm.string(), "non-finite logit (NaN) at position"});
  }
}

TEST_CASE("missing tokenizer, empty prompt, prompt longer than the context") {
  const fs::path ck = tmp_root() / "ctx.bin";
  write_bytes(ck, TinyLlama2c::bytes());
  const fs::path tok = tmp_root() / "ctx_tok.bin";
  write_bytes(tok, tiny_tokenizer_bin());

  // A llama2.c checkpoint has no tokenizer of its own; an HF directory without tokenizer.model neither.
  expect_error("generate -m " + ck.string() + " -p hi -n 1", 1, {ck.string(), "no tokenizer", "-z"});
  const fs::path d = model_copy("no_tok");
  fs::remove(d / "tokenizer.model");
  expect_error("generate -m " + d.string() + " -p hi -n 1", 1, {d.string(), "no tokenizer"});
  expect_error("tokenize -m " + d.string() + " hi", 1, {d.string(), "no tokenizer"});
  expect_error("generate -m " + d.string() + " -z " + (d / "tokenizer.model").string() + " -p hi -n 1", 2,
               {(d / "tokenizer.model").string(), "No such file"});

  // Prompt longer than the context on a model without a sliding window (byte tokens, mostly).
  expect_error("generate -m " + ck.string() + " -z " + tok.string() + " -c 8 -p 'hello, world' -n 1", 1,
               {"the prompt has", "tokens but the context holds 8", "-c/--context"});
  // The default model has a window of 128: with -c 8 the cache holds 8 positions, so the same.
  expect_error("generate -m " + default_model().string() + " -c 8 -p 'hello, world and more words' -n 1", 1,
               {"the context holds 8"});
  // score sizes its context to the tokens, so it cannot overflow; out-of-vocabulary ids can't run.
  expect_error("score -m " + ck.string() + " --tokens 1,262 --logits-out " + (tmp_root() / "l.f32").string(), 1,
               {"token id 262 is outside the vocabulary [0, 262)"});

  // An empty prompt is not an error: it encodes to BOS alone and generation starts from there,
  // as in llama.cpp. (Through the API, an empty id list is a UsageError: test_model.cpp.)
  const Result empty = run_weft("generate -m " + default_model().string() + " -p '' -n 3 --temp 0");
  CHECK(empty.code == 0);
  CHECK(empty.err.find("prompt 1 tokens") != std::string::npos);
  // Generation that reaches the end of a fixed context stops cleanly and says so.
  const Result full = run_weft("generate -m " + ck.string() + " -z " + tok.string() + " -c 8 -p a -n 50 --temp 0");
  CHECK(full.code == 0);
  CHECK(full.err.find("[context full]") != std::string::npos);
}

TEST_CASE("negative and absurd flag values are usage errors (exit 1) naming the flag") {
  const std::string m = "generate -m " + default_model().string() + " -p hi";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" -c -5", "--context"},
      {" -n 99999999999", "--n-predict"},
      {" --top-k -1", "--top-k"},
      {" --min-p 2", "--min-p"},
      {" --repeat-last-n -1", "--repeat-last-n"},
      {" --repeat-penalty 0", "repeat_penalty"},
      {" --repeat-penalty -2", "--repeat-penalty"},
      {" --temp nan", "temperature"},
      {" --top-p nan", "top_p"},
      {" --temp inf", "--temp"},
      {" -t 1e9", "--threads"},
      {" -c 1x", "--context"},
  };
  for (const auto& [flag, needle] : cases) expect_error(m + flag, 1, {needle});
  expect_error("score -m " + default_model().string() + " --tokens 1,,2 --logits-out /dev/null", 1, {"--tokens"});
  expect_error("score -m " + default_model().string() + " --tokens 1,-3 --logits-out /dev/null", 1, {"token id -3"});
  expect_error("score -m " + default_model().string() + " --tokens 99999999999 --logits-out /dev/null", 1,
               {"--tokens", "99999999999"});

  // The largest context the flag accepts: harmless on a sliding-window model (the cache holds the
  // window), refused up front on a model without one when its KV cache cannot fit in RAM (here
  // 4 layers x 64 KV dims x 2 x 4 bytes x 2^24 positions = 34 GB; checked only where that is so).
  const Result rolling = run_weft(m + " -c 16777216 -n 2");
  CHECK(rolling.code == 0);
  const fs::path wide = tmp_root() / "wide_kv.bin";
  write_bytes(wide, llama2c_bytes(64, 16, 4, 2, 2, 262, 8));
  const fs::path tok = tmp_root() / "wide_tok.bin";
  write_bytes(tok, tiny_tokenizer_bin());
  const double ram = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  if (ram < 34e9) {
    expect_error("generate -m " + wide.string() + " -z " + tok.string() + " -p hi -c 16777216 -n 1", 1,
                 {wide.string(), "GB for the KV cache", "lower -c/--context"});
  } else {
    MESSAGE("skipped -c 16777216 without a window: this machine has " << ram / 1e9 << " GB, enough for its KV cache");
  }
}

TEST_CASE("unreadable paths and directories where files are expected") {
  // Permission bits do not stop root: as root the unreadable case runs as `nobody` through
  // setpriv (util-linux) when it is there. A FIFO is tested either way (it must be refused before
  // anything opens it: opening a FIFO for reading blocks).
  const fs::path d = model_copy("unreadable");
  const fs::path st = d / "model.safetensors";
  std::string runner;
  if (::geteuid() == 0) {
    // Only when `nobody` can run the binary at all (the checkout may sit in a private directory).
    const std::string drop = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
    if (std::system((drop + quote(std::getenv("WEFT_BIN")) + " --version >/dev/null 2>&1").c_str()) == 0) runner = drop;
    if (runner.empty()) MESSAGE("running as root and cannot run weft as nobody: chmod 000 case skipped");
  }
  if (::geteuid() != 0 || !runner.empty()) {
    fs::permissions(st, fs::perms::none);
    expect_error("generate -m " + d.string() + " -p hi -n 1", 2, {st.string(), "Permission denied"}, runner);
    fs::permissions(st, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  }
  fs::remove(st);
  REQUIRE(::mkfifo(st.c_str(), 0600) == 0);
  expect_error("generate -m " + d.string() + " -p hi -n 1", 2, {st.string(), "not a regular file"});
  fs::remove(st);

  // Each file of a model directory replaced by a directory.
  for (const char* name : {"model.safetensors", "config.json", "tokenizer.model"}) {
    const fs::path m = model_copy(std::string("dir_") + name);
    fs::remove(m / name);
    fs::create_directories(m / name);
    expect_error("generate -m " + m.string() + " -p hi -n 1", 2, {(m / name).string(), "is a directory"});
  }
  // A directory named like a llama2.c checkpoint; a device where a tokenizer should be.
  const fs::path fake_bin = tmp_root() / "looks_like.bin";
  fs::create_directories(fake_bin);
  expect_error("generate -m " + fake_bin.string() + " -p hi -n 1", 2, {fake_bin.string(), "config.json"});
  expect_error("tokenize -z /dev/null hi", 2, {"/dev/null", "not a regular file"});
  expect_error("tokenize -z " + tmp_root().string() + " hi", 2, {tmp_root().string(), "is a directory"});
  // A path through a regular file.
  expect_error("generate -m " + (d / "config.json" / "x").string() + " -p hi -n 1", 2, {"config.json/x"});
  // Output path that cannot be written.
  expect_error("score -m " + default_model().string() + " --tokens 1,2 --logits-out " + tmp_root().string(), 2,
               {tmp_root().string(), "cannot open for writing"});
}

TEST_CASE("GGUF: truncated files and an unsupported tensor type exit 2 naming the file and the fault") {
  const fs::path good = tmp_root() / "good.gguf";
  REQUIRE(std::system((quote(std::getenv("WEFT_BIN")) + " quantize " + default_model().string() + " " + good.string() +
                       " --type bf16 >/dev/null 2>&1").c_str()) == 0);
  const std::string whole = read_bytes(good);
  const std::vector<std::pair<std::size_t, std::string>> cuts = {
      {0, "bad magic"}, {3, "bad magic"}, {10, "truncated at offset 8"}, {200, "truncated"}, {2000, "truncated"},
      {whole.size() / 2, "runs past the end of the data section"}, {whole.size() - 1, "truncated file?"}};
  for (const auto& [size, what] : cuts) {
    const fs::path p = tmp_root() / ("gguf_cut_" + std::to_string(size) + ".gguf");
    write_bytes(p, whole.substr(0, size));
    expect_error("generate -m " + p.string() + " -p hi -n 1", 2, {p.string(), what});
  }
  // token_embd.weight's info: name, n_dims (u32), two u64 dims, then the ggml type id.
  std::string patched = whole;
  const std::size_t name = patched.find("token_embd.weight");
  REQUIRE(name != std::string::npos);
  const std::uint32_t q5_1 = 7;
  std::memcpy(patched.data() + name + 17 + 4 + 16, &q5_1, 4);
  const fs::path p = tmp_root() / "q5_1.gguf";
  write_bytes(p, patched);
  expect_error("generate -m " + p.string() + " -p hi -n 1", 2,
               {p.string(), "tensor \"token_embd.weight\"", "Q5_1 (id 7) is not supported"});
}
