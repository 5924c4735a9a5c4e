// lib/io: safetensors reader/writer and llama2.c checkpoints, on files the tests write.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/llama2c.hpp"
#include "io/safetensors.hpp"
#include "testing.hpp"
#include "weft/error.hpp"

using namespace weft;
using namespace weft::io;
namespace fs = std::filesystem;
using nlohmann::json;

// The expression throws weft::InputError whose message contains `text` (a std::string or C string).
#define CHECK_INPUT_ERROR(expr, text) \
  CHECK_THROWS_WITH_AS(expr, doctest::Contains(std::string(text).c_str()), weft::InputError)

namespace {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("weft_test_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A safetensors file from a raw header text and `data_bytes` bytes of data (value = index mod 251).
std::string make_raw(const TempDir& dir, const std::string& name, const std::string& header, std::size_t data_bytes) {
  std::string data(data_bytes, '\0');
  for (std::size_t i = 0; i < data_bytes; ++i) data[i] = static_cast<char>(i % 251);
  const std::string path = dir.file(name);
  write_bytes(path, le64(header.size()) + header + data);
  return path;
}

// Deterministic bytes for tensor `index`, so a round trip can check every byte.
void fill_pattern(std::size_t index, std::span<std::byte> out) {
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>((i * 7 + index * 31 + 1) % 256);
}

}  // namespace

TEST_CASE("safetensors writer -> reader round trip, all dtypes and metadata") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  SafetensorsWriter w;
  w.add("a.f32", DType::F32, {3, 5});
  w.add("b.bf16", DType::BF16, {7});  // 14 bytes: the next tensor starts unaligned
  w.add("c.f16", DType::F16, {2, 3, 4});
  w.add("d.scalar", DType::F32, {});
  w.add("e.empty", DType::BF16, {0, 4});
  w.set_metadata({{"format", "pt"}, {"note", "weft test"}});
  w.write(path, fill_pattern);
  CHECK_FALSE(fs::exists(path + ".tmp" + std::to_string(::getpid())));

  // An independent look at the header: 8-aligned data start, packed offsets in declaration order.
  const std::string raw = read_bytes(path);
  std::uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  CHECK((8 + n) % 8 == 0);
  const json h = json::parse(raw.substr(8, n));
  CHECK(h["__metadata__"]["note"] == "weft test");
  CHECK(h["a.f32"]["dtype"] == "F32");
  CHECK(h["a.f32"]["data_offsets"] == json::array({0, 60}));
  CHECK(h["b.bf16"]["data_offsets"] == json::array({60, 74}));
  CHECK(h["c.f16"]["shape"] == json::array({2, 3, 4}));
  CHECK(h["d.scalar"]["shape"] == json::array());
  CHECK(raw.size() == 8 + n + 60 + 14 + 48 + 4 + 0);

  SafetensorsFile f(path);
  CHECK(f.path() == path);
  CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "weft test"}});
  REQUIRE(f.entries().size() == 5);
  const struct {
    const char* name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::size_t index, offset, bytes;
  } expected[] = {{"a.f32", DType::F32, {3, 5}, 0, 0, 60},    {"b.bf16", DType::BF16, {7}, 1, 60, 14},
                  {"c.f16", DType::F16, {2, 3, 4}, 2, 74, 48}, {"d.scalar", DType::F32, {}, 3, 122, 4},
                  {"e.empty", DType::BF16, {0, 4}, 4, 126, 0}};
  const std::byte* base = f.entries().front().data.data();
  for (const auto& x : expected) {
    CAPTURE(x.name);
    const SafetensorsEntry* e = f.find(x.name);
    REQUIRE(e != nullptr);
    CHECK(e->name == x.name);
    CHECK(e->dtype == x.dtype);
    CHECK(e->shape == x.shape);
    REQUIRE(e->data.size() == x.bytes);
    std::vector<std::byte> want(x.bytes);
    fill_pattern(x.index, want);
    CHECK(std::equal(want.begin(), want.end(), e->data.begin()));
    CHECK(e->data.data() == base + x.offset);  // views into one mapping, not copies
  }
  CHECK(f.find("absent") == nullptr);
  CHECK(f.find("a.f3") == nullptr);
  // Entries come in data order.
  CHECK(f.entries()[0].name == "a.f32");
  CHECK(f.entries()[1].name == "b.bf16");

  // The set opens a directory holding model.safetensors, or the file itself.
  for (const std::string& where : {dir.path.string(), path}) {
    const SafetensorsSet set = SafetensorsSet::open_directory(where);
    CHECK(set.names() == std::vector<std::string>{"a.f32", "b.bf16", "c.f16", "d.scalar", "e.empty"});
    REQUIRE(set.find("c.f16") != nullptr);
    CHECK(set.find("c.f16")->shape == std::vector<std::int64_t>{2, 3, 4});
    CHECK(set.file_of("c.f16") == path);
    CHECK(set.find("nope") == nullptr);
    CHECK(set.file_of("nope").empty());
  }
}

TEST_CASE("safetensors writer: no metadata, empty file list, fill exceptions, bad declarations") {
  TempDir dir;
  SafetensorsWriter w;
  w.write(dir.file("empty.safetensors"), fill_pattern);
  const SafetensorsFile f(dir.file("empty.safetensors"));
  CHECK(f.entries().empty());
  CHECK(f.metadata().empty());

  w.add("x", DType::F32, {4});
  CHECK_THROWS_AS(w.add("x", DType::F16, {1}), UsageError);
  CHECK_THROWS_AS(w.add("__metadata__", DType::F16, {1}), UsageError);
  CHECK_THROWS_AS(w.add("neg", DType::F16, {2, -1}), UsageError);
  CHECK_THROWS_AS(w.add("huge", DType::F32, {INT64_MAX, 4}), UsageError);
  CHECK(w.size() == 1);

  // A failing fill leaves no file behind, not even the temporary.
  const std::string path = dir.file("fail.safetensors");
  CHECK_THROWS_AS(w.write(path, [](std::size_t, std::span<std::byte>) { throw std::runtime_error("boom"); }),
                  std::runtime_error);
  CHECK_FALSE(fs::exists(path));
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
  // An unwritable destination is an InputError naming it.
  const std::string bad = dir.file("no/such/dir/x.safetensors");
  CHECK_INPUT_ERROR(w.write(bad, fill_pattern), bad);
}

TEST_CASE("safetensors sharded directory with an index") {
  TempDir dir;
  SafetensorsWriter w1, w2;
  w1.add("model.embed_tokens.weight", DType::BF16, {8, 4});
  w1.add("model.layers.0.input_layernorm.weight", DType::F32, {4});
  w2.add("model.norm.weight", DType::F16, {4});
  w2.add("lm_head.weight", DType::BF16, {8, 4});
  const std::string s1 = dir.file("model-00001-of-00002.safetensors"), s2 = dir.file("model-00002-of-00002.safetensors");
  w1.write(s1, fill_pattern);
  w2.write(s2, [](std::size_t i, std::span<std::byte> out) { fill_pattern(i + 10, out); });
  const json index = {{"metadata", {{"total_size", 64 + 16 + 8 + 64}}},
                      {"weight_map",
                       {{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
                        {"model.layers.0.input_layernorm.weight", "model-00001-of-00002.safetensors"},
                        {"model.norm.weight", "model-00002-of-00002.safetensors"},
                        {"lm_head.weight", "model-00002-of-00002.safetensors"}}}};
  const std::string index_path = dir.file("model.safetensors.index.json");
  write_bytes(index_path, index.dump(2));

  const SafetensorsSet set = SafetensorsSet::open_directory(dir.path.string());
  CHECK(set.names() == std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight",
                                                "model.layers.0.input_layernorm.weight", "model.norm.weight"});
  CHECK(set.files().size() == 2);
  CHECK(set.file_of("model.embed_tokens.weight") == s1);
  CHECK(set.file_of("lm_head.weight") == s2);
  const SafetensorsEntry* head = set.find("lm_head.weight");
  REQUIRE(head != nullptr);
  CHECK(head->dtype == DType::BF16);
  CHECK(head->shape == std::vector<std::int64_t>{8, 4});
  std::vector<std::byte> want(64);
  fill_pattern(11, want);
  CHECK(std::memcmp(head->data.data(), want.data(), 64) == 0);
  CHECK(set.find("model.norm.weight")->dtype == DType::F16);

  SUBCASE("missing shard file") {
    json bad = index;
    bad["weight_map"]["model.norm.weight"] = "model-00003-of-00002.safetensors";
    write_bytes(index_path, bad.dump());
    const auto open = [&] { (void)SafetensorsSet::open_directory(dir.path.string()); };
    CHECK_INPUT_ERROR(open(), index_path);
    CHECK_INPUT_ERROR(open(), dir.file("model-00003-of-00002.safetensors"));
    CHECK_INPUT_ERROR(open(), "model.norm.weight");
  }
  SUBCASE("tensor listed in the index but missing from its shard") {
    json bad = index;
    bad["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors";
    write_bytes(index_path, bad.dump());
    const auto open = [&] { (void)SafetensorsSet::open_directory(dir.path.string()); };
    CHECK_INPUT_ERROR(open(), index_path);
    CHECK_INPUT_ERROR(open(), s1);
    CHECK_INPUT_ERROR(open(), "model.layers.9.mlp.up_proj.weight");
  }
  SUBCASE("tensor in a shard at a different name") {
    json bad = index;
    bad["weight_map"].erase("lm_head.weight");
    bad["weight_map"]["output.weight"] = "model-00002-of-00002.safetensors";
    write_bytes(index_path, bad.dump());
    const auto open = [&] { (void)SafetensorsSet::open_directory(dir.path.string()); };
    CHECK_INPUT_ERROR(open(), index_path);
    CHECK_INPUT_ERROR(open(), s2);
    CHECK_INPUT_ERROR(open(), "output.weight");
  }
  SUBCASE("shard holds a tensor the index does not list") {
    json bad = index;
    bad["weight_map"].erase("lm_head.weight");
    write_bytes(index_path, bad.dump());
    const auto open = [&] { (void)SafetensorsSet::open_directory(dir.path.string()); };
    CHECK_INPUT_ERROR(open(), index_path);
    CHECK_INPUT_ERROR(open(), s2);
    CHECK_INPUT_ERROR(open(), "lm_head.weight");
  }
  SUBCASE("index maps a tensor to the other shard") {
    json bad = index;
    bad["weight_map"]["lm_head.weight"] = "model-00001-of-00002.safetensors";
    write_bytes(index_path, bad.dump());
    const auto open = [&] { (void)SafetensorsSet::open_directory(dir.path.string()); };
    CHECK_INPUT_ERROR(open(), index_path);
    CHECK_INPUT_ERROR(open(), s1);
    CHECK_INPUT_ERROR(open(), "lm_head.weight");
  }
  SUBCASE("two shards hold the same tensor") {
    SafetensorsWriter w3;
    w3.add("extra.weight", DType::F32, {2});
    w3.add("model.norm.weight", DType::F16, {4});
    const std::string s3 = dir.file("model-extra.safetensors");
    w3.write(s3, fill_pattern);
    json bad = index;
    bad["weight_map"]["extra.weight"] = "model-extra.safetensors";
    write_bytes(index_path, bad.dump());
    const auto open = [&] { (void)SafetensorsSet::open_directory(dir.path.string()); };
    CHECK_INPUT_ERROR(open(), index_path);
    CHECK_INPUT_ERROR(open(), s3);
    CHECK_INPUT_ERROR(open(), "model.norm.weight");
    CHECK_INPUT_ERROR(open(), "(listed for " + s2 + ")");
  }
  SUBCASE("malformed index") {
    for (const std::string text : {"{not json", "[1, 2]", "{}", R"({"weight_map": []})", R"({"weight_map": {}})",
                                   R"({"weight_map": {"lm_head.weight": 3}})"}) {
      CAPTURE(text);
      write_bytes(index_path, text);
      CHECK_INPUT_ERROR((void)SafetensorsSet::open_directory(dir.path.string()), index_path);
    }
  }
  SUBCASE("a corrupt shard is named") {
    write_bytes(s2, "1234567");
    CHECK_INPUT_ERROR((void)SafetensorsSet::open_directory(dir.path.string()), s2);
  }
}

TEST_CASE("safetensors set: directory without a checkpoint, missing path") {
  TempDir dir;
  CHECK_INPUT_ERROR((void)SafetensorsSet::open_directory(dir.path.string()), dir.path.string());
  const std::string missing = dir.file("nothing-here");
  CHECK_INPUT_ERROR((void)SafetensorsSet::open_directory(missing), missing);
  CHECK_INPUT_ERROR(SafetensorsFile{missing}, missing);
}

TEST_CASE("safetensors malformed headers: each error names the file and the tensor") {
  TempDir dir;
  struct Case {
    const char* what;
    std::string header;
    std::size_t data_bytes;
    std::vector<std::string> message_parts;  // besides the path
  };
  const std::string ok_entry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::vector<Case> cases = {
      {"not JSON", "{\"a\": ", 0, {"not valid JSON"}},
      {"not UTF-8", "{\"\xff\xfe\": 1}", 0, {"not valid JSON"}},
      {"not an object", "[1, 2, 3]", 0, {"not a JSON object"}},
      {"string header", "\"x\"", 0, {"not a JSON object"}},
      {"entry not an object", R"({"w": 5})", 0, {"tensor w", "not a JSON object"}},
      {"missing dtype", R"({"w": {"shape":[2],"data_offsets":[0,8]}})", 8, {"tensor w", "dtype"}},
      {"dtype not a string", R"({"w": {"dtype":1,"shape":[2],"data_offsets":[0,8]}})", 8, {"tensor w", "dtype"}},
      {"missing shape", R"({"w": {"dtype":"F32","data_offsets":[0,8]}})", 8, {"tensor w", "shape"}},
      {"shape not an array", R"({"w": {"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8, {"tensor w", "shape"}},
      {"missing offsets", R"({"w": {"dtype":"F32","shape":[2]}})", 8, {"tensor w", "data_offsets"}},
      {"three offsets", R"({"w": {"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", 8, {"tensor w", "data_offsets"}},
      {"negative offset", R"({"w": {"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8, {"tensor w", "data_offsets"}},
      {"fractional offset", R"({"w": {"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", 8, {"tensor w", "data_offsets"}},
      {"negative dim", R"({"w": {"dtype":"F32","shape":[-2, -4],"data_offsets":[0,32]}})", 32, {"tensor w", "negative"}},
      {"fractional dim", R"({"w": {"dtype":"F32","shape":[2.5],"data_offsets":[0,10]}})", 10, {"tensor w", "non-integer"}},
      {"dim beyond int64", R"({"w": {"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", 8, {"tensor w"}},
      {"byte count overflow", R"({"w": {"dtype":"BF16","shape":[4294967296, 4294967296],"data_offsets":[0,8]}})", 8,
       {"tensor w", "overflows"}},
      {"byte count mismatch", R"({"w": {"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", 8,
       {"tensor w", "needs 6 bytes", "hold 8"}},
      {"begin > end", R"({"w": {"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8, {"tensor w", "begin 8 > end 4"}},
      {"end past the file", R"({"w": {"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 12, {"tensor w", "truncated"}},
      {"overlap", R"({"w": {"dtype":"F32","shape":[2],"data_offsets":[0,8]}, "v": {"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, {"tensor v", "overlaps tensor w"}},
      {"overlap, nested", R"({"w": {"dtype":"F32","shape":[4],"data_offsets":[0,16]}, "v": {"dtype":"F16","shape":[2],"data_offsets":[8,12]}})",
       16, {"tensor v", "overlaps tensor w"}},
      {"duplicate name", "{\"w\": " + ok_entry + ", \"w\": " + ok_entry + "}", 8, {"tensor w", "more than once"}},
      {"unsupported I8", R"({"w": {"dtype":"I8","shape":[8],"data_offsets":[0,8]}})", 8,
       {"unsupported dtype I8 for tensor w in ", "(weft reads F32, F16, BF16)"}},
      {"unsupported F64", R"({"w": {"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8, {"unsupported dtype F64 for tensor w"}},
      {"unsupported BOOL", R"({"w": {"dtype":"BOOL","shape":[8],"data_offsets":[0,8]}})", 8, {"unsupported dtype BOOL for tensor w"}},
      {"unsupported F8_E4M3", R"({"w": {"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", 8,
       {"unsupported dtype F8_E4M3 for tensor w"}},
      {"unsupported I32", R"({"w": {"dtype":"I32","shape":[2],"data_offsets":[0,8]}})", 8, {"unsupported dtype I32 for tensor w"}},
      {"unknown dtype", R"({"w": {"dtype":"Q9_K","shape":[8],"data_offsets":[0,8]}})", 8,
       {"dtype Q9_K for tensor w", "weft reads F32, F16, BF16"}},
      {"lower-case dtype", R"({"w": {"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", 8, {"dtype f32 for tensor w"}},
      {"metadata not an object", R"({"__metadata__": [1], "w": )" + ok_entry + "}", 8, {"__metadata__"}},
      {"metadata value not a string", R"({"__metadata__": {"format": 1}, "w": )" + ok_entry + "}", 8, {"format"}},
  };
  int n = 0;
  for (const Case& c : cases) {
    CAPTURE(c.what);
    const std::string path = make_raw(dir, "bad" + std::to_string(n++) + ".safetensors", c.header, c.data_bytes);
    CHECK_INPUT_ERROR(SafetensorsFile{path}, path);
    for (const std::string& part : c.message_parts) CHECK_INPUT_ERROR(SafetensorsFile{path}, part);
  }

  // A valid header around the same data parses (the cases above fail for their own reason).
  const std::string good = make_raw(dir, "good.safetensors", "{\"w\": " + ok_entry + "}", 8);
  CHECK(SafetensorsFile(good).find("w")->data.size() == 8);
  // Gaps between tensors and trailing padding are allowed; zero-size tensors overlap nothing.
  const std::string gaps = make_raw(
      dir, "gaps.safetensors",
      R"({"w": {"dtype":"F32","shape":[1],"data_offsets":[4,8]}, "z": {"dtype":"F32","shape":[0],"data_offsets":[5,5]}})",
      16);
  CHECK(SafetensorsFile(gaps).entries().size() == 2);
}

TEST_CASE("safetensors: short files and impossible header lengths") {
  TempDir dir;
  for (const std::string& bytes : {std::string(), std::string("\x01"), std::string(7, '\0')}) {
    const std::string path = dir.file("short.safetensors");
    write_bytes(path, bytes);
    CHECK_INPUT_ERROR(SafetensorsFile{path}, path);
    CHECK_INPUT_ERROR(SafetensorsFile{path}, "shorter than the 8-byte header length");
  }
  for (const std::uint64_t len : {std::uint64_t{3}, std::uint64_t{1} << 40, ~std::uint64_t{0}}) {
    CAPTURE(len);
    const std::string path = dir.file("long.safetensors");
    write_bytes(path, le64(len) + "{}");
    CHECK_INPUT_ERROR(SafetensorsFile{path}, path);
    CHECK_INPUT_ERROR(SafetensorsFile{path}, "header length " + std::to_string(len));
  }
  // Zero-length header is not JSON.
  const std::string path = dir.file("zero.safetensors");
  write_bytes(path, le64(0));
  CHECK_INPUT_ERROR(SafetensorsFile{path}, "not valid JSON");
}

TEST_CASE("safetensors: truncating a valid file anywhere is an InputError naming the file") {
  TempDir dir;
  const std::string path = dir.file("whole.safetensors");
  SafetensorsWriter w;
  w.add("first", DType::F32, {4, 4});
  w.add("second", DType::BF16, {3});
  w.add("last", DType::F16, {5});
  w.write(path, fill_pattern);
  const std::string whole = read_bytes(path);
  std::uint64_t n = 0;
  std::memcpy(&n, whole.data(), 8);
  const std::size_t data = 8 + n;
  REQUIRE(whole.size() == data + 64 + 6 + 10);
  const std::string cut = dir.file("cut.safetensors");
  // Where the cut falls, and which tensor the message must then name (empty: none).
  const std::vector<std::pair<std::size_t, std::string>> cuts = {
      {0, ""},           {4, ""},          {8, ""},          {9, ""},
      {8 + n / 2, ""},   {data - 1, ""},   {data, "first"},  {data + 63, "first"},
      {data + 64, "second"}, {data + 69, "second"}, {data + 70, "last"}, {whole.size() - 1, "last"}};
  for (const auto& [size, tensor] : cuts) {
    CAPTURE(size);
    write_bytes(cut, whole.substr(0, size));
    CHECK_INPUT_ERROR(SafetensorsFile{cut}, cut);
    if (!tensor.empty()) CHECK_INPUT_ERROR(SafetensorsFile{cut}, "tensor " + tensor);
  }
  write_bytes(cut, whole);
  CHECK(SafetensorsFile(cut).entries().size() == 3);
}

namespace {

struct Llama2cSpec {
  std::int32_t dim = 8, hidden_dim = 12, n_layers = 2, n_heads = 2, n_kv_heads = 1, vocab_size = 10, seq_len = 4;
};

// Floats a llama2.c checkpoint with this header should have after the header.
std::size_t llama2c_floats(const Llama2cSpec& s) {
  const std::size_t dim = s.dim, hidden = s.hidden_dim, L = s.n_layers, vocab = std::abs(s.vocab_size);
  const std::size_t head = dim / s.n_heads, kv = head * s.n_kv_heads;
  std::size_t n = vocab * dim + L * dim + L * dim * dim + 2 * L * kv * dim + L * dim * dim + L * dim +
                  3 * L * hidden * dim + dim + s.seq_len * head;
  if (s.vocab_size < 0) n += vocab * dim;
  return n;
}

// A checkpoint whose float i (counting after the header) is i, plus `extra` bytes (negative: cut).
std::string write_llama2c(const TempDir& dir, const std::string& name, const Llama2cSpec& s, long extra = 0) {
  const std::int32_t header[7] = {s.dim, s.hidden_dim, s.n_layers, s.n_heads, s.n_kv_heads, s.vocab_size, s.seq_len};
  std::string bytes(reinterpret_cast<const char*>(header), sizeof header);
  const std::size_t n = llama2c_floats(s);
  for (std::size_t i = 0; i < n; ++i) {
    const float f = static_cast<float>(i);
    bytes.append(reinterpret_cast<const char*>(&f), 4);
  }
  if (extra >= 0) {
    bytes.append(static_cast<std::size_t>(extra), '\x7f');
  } else {
    bytes.resize(bytes.size() - static_cast<std::size_t>(-extra));
  }
  const std::string path = dir.file(name);
  write_bytes(path, bytes);
  return path;
}

}  // namespace

TEST_CASE("llama2.c checkpoint: config, views at the right offsets, shared and separate classifier") {
  TempDir dir;
  for (const bool shared : {true, false}) {
    CAPTURE(shared);
    Llama2cSpec s;
    if (!shared) s.vocab_size = -s.vocab_size;
    const std::string path = write_llama2c(dir, shared ? "shared.bin" : "wcls.bin", s);
    const Llama2cCheckpoint ck(path);
    const Llama2cConfig& c = ck.config();
    CHECK(ck.path() == path);
    CHECK(c.dim == 8);
    CHECK(c.hidden_dim == 12);
    CHECK(c.n_layers == 2);
    CHECK(c.n_heads == 2);
    CHECK(c.n_kv_heads == 1);
    CHECK(c.vocab_size == 10);
    CHECK(c.seq_len == 4);
    CHECK(c.shared_classifier == shared);

    // Expected first float index of each tensor, spelled out in file order.
    const std::int64_t dim = 8, hid = 12, kv = 4, vocab = 10, L = 2;
    std::int64_t at = 0;
    const std::int64_t emb = at;       at += vocab * dim;
    const std::int64_t att_norm = at;  at += L * dim;
    const std::int64_t wq = at;        at += L * dim * dim;
    const std::int64_t wk = at;        at += L * kv * dim;
    const std::int64_t wv = at;        at += L * kv * dim;
    const std::int64_t wo = at;        at += L * dim * dim;
    const std::int64_t ffn_norm = at;  at += L * dim;
    const std::int64_t w1 = at;        at += L * hid * dim;
    const std::int64_t w2 = at;        at += L * dim * hid;
    const std::int64_t w3 = at;        at += L * hid * dim;
    const std::int64_t final_norm = at; at += dim;
    at += 2 * 4 * (dim / 2 / 2);  // freq_cis_real, freq_cis_imag: seq_len * head_size / 2 each
    const std::int64_t wcls = at;

    const auto check_view = [&](WeightRole role, int layer, std::int64_t first, std::int64_t rows, std::int64_t cols,
                                int ndim) {
      CAPTURE(static_cast<int>(role));
      CAPTURE(layer);
      const TensorView v = ck.tensor(role, layer);
      REQUIRE_FALSE(v.empty());
      CHECK(v.dtype == DType::F32);
      CHECK(v.ndim == ndim);
      CHECK(v.rows == rows);
      CHECK(v.cols == cols);
      CHECK(v.f32().front() == static_cast<float>(first));
      CHECK(v.f32().back() == static_cast<float>(first + rows * cols - 1));
    };
    check_view(WeightRole::TokenEmbedding, -1, emb, vocab, dim, 2);
    for (int l = 0; l < 2; ++l) {
      check_view(WeightRole::AttnNorm, l, att_norm + l * dim, 1, dim, 1);
      check_view(WeightRole::Wq, l, wq + l * dim * dim, dim, dim, 2);
      check_view(WeightRole::Wk, l, wk + l * kv * dim, kv, dim, 2);
      check_view(WeightRole::Wv, l, wv + l * kv * dim, kv, dim, 2);
      check_view(WeightRole::Wo, l, wo + l * dim * dim, dim, dim, 2);
      check_view(WeightRole::FfnNorm, l, ffn_norm + l * dim, 1, dim, 1);
      check_view(WeightRole::WGate, l, w1 + l * hid * dim, hid, dim, 2);
      check_view(WeightRole::WDown, l, w2 + l * dim * hid, dim, hid, 2);
      check_view(WeightRole::WUp, l, w3 + l * hid * dim, hid, dim, 2);
    }
    check_view(WeightRole::OutputNorm, -1, final_norm, 1, dim, 1);
    if (shared) {
      CHECK(ck.tensor(WeightRole::Output, -1).empty());
    } else {
      check_view(WeightRole::Output, -1, wcls, vocab, dim, 2);
    }
    CHECK_THROWS_AS((void)ck.tensor(WeightRole::Wq, 2), UsageError);
    CHECK_THROWS_AS((void)ck.tensor(WeightRole::Wq, -1), UsageError);
    CHECK_THROWS_AS((void)ck.tensor(WeightRole::TokenEmbedding, 0), UsageError);
  }
}

TEST_CASE("llama2.c checkpoint: truncated, extended and bad headers") {
  TempDir dir;
  const Llama2cSpec good;
  const std::size_t expected = 28 + 4 * llama2c_floats(good);

  SUBCASE("truncated or extended") {
    for (const long extra : {-1L, -4L, -100L, -static_cast<long>(expected - 28), 1L, 4L, 4096L}) {
      CAPTURE(extra);
      const std::string path = write_llama2c(dir, "sized.bin", good, extra);
      const std::size_t actual = expected + static_cast<std::size_t>(extra);
      CHECK_INPUT_ERROR(Llama2cCheckpoint{path}, path);
      CHECK_INPUT_ERROR(Llama2cCheckpoint{path}, "expected " + std::to_string(expected) + " bytes, file has " +
                                                     std::to_string(actual));
      if (extra < 0) CHECK_INPUT_ERROR(Llama2cCheckpoint{path}, "truncated");
    }
    // A separate classifier the header does not announce makes the file too long.
    Llama2cSpec separate = good;
    separate.vocab_size = -good.vocab_size;
    const std::string bytes = read_bytes(write_llama2c(dir, "sep.bin", separate));
    std::string lying = bytes;
    const std::int32_t positive = good.vocab_size;
    std::memcpy(lying.data() + 20, &positive, 4);
    write_bytes(dir.file("lying.bin"), lying);
    CHECK_INPUT_ERROR(Llama2cCheckpoint{dir.file("lying.bin")}, "expected " + std::to_string(expected));
  }
  SUBCASE("shorter than the header") {
    for (const std::size_t size : {0, 1, 27}) {
      const std::string path = dir.file("tiny.bin");
      write_bytes(path, std::string(size, '\x01'));
      CHECK_INPUT_ERROR(Llama2cCheckpoint{path}, path);
      CHECK_INPUT_ERROR(Llama2cCheckpoint{path}, "truncated");
    }
  }
  SUBCASE("bad header values") {
    struct Bad {
      Llama2cSpec spec;
      const char* message;
    };
    auto with = [&](auto change) {
      Llama2cSpec s = good;
      change(s);
      return s;
    };
    const std::vector<Bad> bad = {
        {with([](Llama2cSpec& s) { s.dim = 0; }), "dim is 0"},
        {with([](Llama2cSpec& s) { s.dim = -8; }), "dim is -8"},
        {with([](Llama2cSpec& s) { s.hidden_dim = -1; }), "hidden_dim is -1"},
        {with([](Llama2cSpec& s) { s.n_layers = 0; }), "n_layers is 0"},
        {with([](Llama2cSpec& s) { s.n_heads = -2; }), "n_heads is -2"},
        {with([](Llama2cSpec& s) { s.n_kv_heads = 0; }), "n_kv_heads is 0"},
        {with([](Llama2cSpec& s) { s.vocab_size = 0; }), "vocab_size is 0"},
        {with([](Llama2cSpec& s) { s.vocab_size = INT32_MIN; }), "vocab_size is"},
        {with([](Llama2cSpec& s) { s.seq_len = -4; }), "seq_len is -4"},
        {with([](Llama2cSpec& s) { s.n_heads = 3; }), "dim 8 is not divisible by n_heads 3"},
        {with([](Llama2cSpec& s) { s.n_kv_heads = 3; }), "n_heads 2 is not divisible by n_kv_heads 3"},
        {with([](Llama2cSpec& s) { s.n_kv_heads = 4; }), "n_heads 2 is not divisible by n_kv_heads 4"},
        {with([](Llama2cSpec& s) { s.n_heads = 8; s.n_kv_heads = 8; }), "head size 1 is odd"},
        {with([](Llama2cSpec& s) {
           s.dim = 2147483646;
           s.hidden_dim = 2147483647;
           s.n_layers = 2147483647;
           s.n_heads = 1;
           s.n_kv_heads = 1;
         }),
         "too large"},
        {with([](Llama2cSpec& s) { s.vocab_size = 2147483647; s.dim = 2147483646; s.n_heads = 1; s.n_kv_heads = 1; }),
         "too large"},
    };
    for (const Bad& b : bad) {
      CAPTURE(b.message);
      const std::int32_t header[7] = {b.spec.dim,        b.spec.hidden_dim, b.spec.n_layers, b.spec.n_heads,
                                      b.spec.n_kv_heads, b.spec.vocab_size, b.spec.seq_len};
      const std::string path = dir.file("bad.bin");
      write_bytes(path, std::string(reinterpret_cast<const char*>(header), sizeof header) + std::string(4096, '\0'));
      CHECK_INPUT_ERROR(Llama2cCheckpoint{path}, path);
      CHECK_INPUT_ERROR(Llama2cCheckpoint{path}, b.message);
    }
  }
}
