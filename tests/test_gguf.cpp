// GGUF: the reader on hand-built files (every metadata type, v2 and v3, alignment), its error
// matrix, the writer, the model metadata and Q/K row order, loading and quantize_model on a
// synthetic model. Needs nothing from ../shared (test_gguf_model.cpp does the real checkpoints).
#include <unistd.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <vector>

#include "core/quant.hpp"
#include "io/gguf.hpp"
#include "kernels/kernels.hpp"
#include "model/gguf_model.hpp"
#include "model/weights.hpp"
#include "testing.hpp"
#include "weft/error.hpp"
#include "weft/quantize.hpp"

namespace fs = std::filesystem;
using namespace weft;
using io::GgufFile;
using io::GgufType;
using io::GgufWriter;

namespace {

const fs::path& tmp_dir() {
  static const weft::testing::ScratchDir dir("weft_gguf");
  return dir.path();
}

std::string write_file(const std::string& name, const std::string& bytes) {
  const std::string p = (tmp_dir() / name).string();
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p;
}

// Builds GGUF bytes by hand, field by field, so that tests can break any of them.
struct Raw {
  std::string b;
  template <class T>
  Raw& le(T v) {
    char c[sizeof(T)];
    std::memcpy(c, &v, sizeof(T));
    b.append(c, sizeof(T));
    return *this;
  }
  Raw& u32(std::uint32_t v) { return le(v); }
  Raw& u64(std::uint64_t v) { return le(v); }
  Raw& str(std::string_view s) {
    u64(s.size());
    b.append(s);
    return *this;
  }
  Raw& header(std::uint32_t version, std::uint64_t tensors, std::uint64_t kvs) {
    b += "GGUF";
    return u32(version).u64(tensors).u64(kvs);
  }
  Raw& key(std::string_view k, GgufType t) { return str(k).u32(static_cast<std::uint32_t>(t)); }
  Raw& tensor(std::string_view name, std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset) {
    str(name).u32(static_cast<std::uint32_t>(ne.size()));
    for (auto d : ne) u64(d);
    return u32(type).u64(offset);
  }
  Raw& pad(std::size_t align = 32) {
    b.append((align - b.size() % align) % align, '\0');
    return *this;
  }
  Raw& data(std::size_t n, char fill = '\x11') {
    b.append(n, fill);
    return *this;
  }
};

// A valid v3 file: two kvs, two F32 tensors (a [2, 3] matrix and a [4] vector).
std::string small_file(std::uint32_t version = 3) {
  Raw r;
  r.header(version, 2, 2);
  r.key("general.architecture", GgufType::String).str("llama");
  r.key("answer", GgufType::U32).u32(42);
  r.tensor("a", {3, 2}, 0, 0).tensor("b", {4}, 0, 32);
  r.pad().data(24).pad().data(16);
  return r.b;
}

// Expects InputError whose message holds every needle (and the path).
void expect_input_error(const std::string& name, const std::string& bytes, const std::vector<std::string>& needles) {
  CAPTURE(name);
  const std::string path = write_file(name, bytes);
  std::string msg;
  try {
    GgufFile f(path);
  } catch (const InputError& e) {
    msg = e.what();
  }
  CAPTURE(msg);
  REQUIRE_FALSE(msg.empty());
  CHECK(msg.find(path) != std::string::npos);
  for (const auto& n : needles) {
    CAPTURE(n);
    CHECK(msg.find(n) != std::string::npos);
  }
}

QuantizeOptions qopt(const std::string& type) {
  QuantizeOptions o;
  o.type = type;
  return o;
}

std::span<const std::byte> as_bytes(const std::string& s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

}  // namespace

TEST_CASE("raw v2 and v3 files with every metadata type, nested arrays, typed getters") {
  for (std::uint32_t version : {2u, 3u}) {
    CAPTURE(version);
    Raw r;
    r.header(version, 1, 16);
    r.key("u8", GgufType::U8).le<std::uint8_t>(200);
    r.key("i8", GgufType::I8).le<std::int8_t>(-5);
    r.key("u16", GgufType::U16).le<std::uint16_t>(65535);
    r.key("i16", GgufType::I16).le<std::int16_t>(-300);
    r.key("u32", GgufType::U32).u32(4000000000u);
    r.key("i32", GgufType::I32).le<std::int32_t>(-7);
    r.key("f32", GgufType::F32).le<float>(1.5f);
    r.key("bool", GgufType::Bool).le<std::uint8_t>(1);
    r.key("string", GgufType::String).str("héllo");
    r.key("u64", GgufType::U64).u64(1ull << 40);
    r.key("i64", GgufType::I64).le<std::int64_t>(-(1ll << 40));
    r.key("f64", GgufType::F64).le<double>(0.25);
    r.key("strings", GgufType::Array).u32(8).u64(3).str("a").str("").str("ccc");
    r.key("nested", GgufType::Array).u32(9).u64(2);
    r.u32(8).u64(2).str("x").str("yz");    // ["x", "yz"]
    r.u32(4).u64(3).u32(1).u32(2).u32(3);  // [1, 2, 3]
    r.key("i16s", GgufType::Array).u32(3).u64(2).le<std::int16_t>(-1).le<std::int16_t>(7);
    r.key("general.alignment", GgufType::U32).u32(64);
    r.tensor("t", {4}, 0, 0).pad(64).data(16);
    const GgufFile f(write_file("all_types_v" + std::to_string(version) + ".gguf", r.b));
    CHECK(f.version() == version);
    CHECK(f.alignment() == 64);
    CHECK(f.data_offset() % 64 == 0);
    CHECK(f.metadata().size() == 16);
    CHECK(f.metadata()[8].first == "string");

    // Integers convert when the value fits, whatever the stored type.
    CHECK(f.get_u32("u8") == 200);
    CHECK(f.get_i32("i8") == -5);
    CHECK(f.get_u32("u16") == 65535);
    CHECK(f.get_i32("i16") == -300);
    CHECK(f.get_u32("u32") == 4000000000u);
    CHECK(f.get_u64("u64") == (1ull << 40));
    CHECK(f.find("i64")->as_i64() == -(1ll << 40));
    CHECK(f.get_f32("f32") == 1.5f);
    CHECK(f.get_f32("f64") == 0.25f);
    CHECK(f.get_bool("bool"));
    CHECK(f.get_string("string") == "héllo");
    CHECK(f.get_string_array("strings") == std::vector<std::string>{"a", "", "ccc"});
    CHECK(f.get_i32_array("i16s") == std::vector<std::int32_t>{-1, 7});
    const io::GgufValue* nested = f.find("nested");
    REQUIRE(nested != nullptr);
    CHECK(nested->array_type() == GgufType::Array);
    CHECK(nested->array_size() == 2);
    CHECK(nested->array_at(0).array_at(1).as_string() == "yz");
    CHECK(nested->array_at(1).array_at(2).as_u64() == 3u);
    CHECK(f.find("strings")->array_at(2).as_string() == "ccc");

    // Absent keys: try_ gives nullopt, get_ names the key.
    CHECK_FALSE(f.try_u32("missing").has_value());
    CHECK_FALSE(f.try_string_array("missing").has_value());
    CHECK_THROWS_WITH_AS(f.get_u32("missing"), doctest::Contains("required key \"missing\" is missing"), InputError);
    // Wrong types and values that do not fit name the key, expected and actual.
    CHECK_THROWS_WITH_AS(f.get_u32("i8"), doctest::Contains("key \"i8\" value -5 (i8) does not fit in u32"), InputError);
    CHECK_THROWS_WITH_AS(f.get_i32("u32"), doctest::Contains("does not fit in i32"), InputError);
    CHECK_THROWS_WITH_AS(f.get_u32("string"), doctest::Contains("has type string, expected an integer"), InputError);
    CHECK_THROWS_WITH_AS(f.get_string("u8"), doctest::Contains("has type u8, expected string"), InputError);
    CHECK_THROWS_WITH_AS(f.get_f32("bool"), doctest::Contains("expected f32"), InputError);
    CHECK_THROWS_WITH_AS(f.get_f32_array("strings"), doctest::Contains("element 0 has type string, expected f32"), InputError);
    CHECK_THROWS_WITH_AS(f.get_string_array("u8"), doctest::Contains("expected an array of string"), InputError);

    const io::GgufTensor* t = f.find_tensor("t");
    REQUIRE(t != nullptr);
    CHECK(t->data.size() == 16);
    CHECK(reinterpret_cast<std::uintptr_t>(t->data.data()) % 64 == 0);
  }
}

TEST_CASE("writer -> reader round trip: metadata, tensors of every dtype, alignment, shapes") {
  for (std::uint32_t alignment : {32u, 64u, 1u}) {
    CAPTURE(alignment);
    const std::string path = (tmp_dir() / ("rt" + std::to_string(alignment) + ".gguf")).string();
    struct T {
      std::string name;
      DType dtype;
      std::vector<std::int64_t> shape;
    };
    const std::vector<T> tensors = {{"f32", DType::F32, {3, 5}},   {"f16", DType::F16, {7}},
                                    {"bf16", DType::BF16, {2, 3}}, {"q8", DType::Q8_0, {2, 64}},
                                    {"q40", DType::Q4_0, {32}},    {"q4k", DType::Q4_K, {2, 1, 256}},
                                    {"q6k", DType::Q6_K, {256}}};
    std::vector<std::string> data;
    {
      GgufWriter w(path, alignment);
      w.add_u8("u8", 7);
      w.add_u32("u32", 123456);
      w.add_i32("i32", -42);
      w.add_u64("u64", 1ull << 50);
      w.add_f32("f32", 0.1f);
      w.add_bool("bool", false);
      w.add_string("s", "text");
      w.add_string_array("sa", {"x", "", "▁y"});
      w.add_f32_array("fa", std::vector<float>{1.f, -2.5f});
      w.add_i32_array("ia", std::vector<std::int32_t>{3, -4, 5});
      std::mt19937 rng(1);
      for (const T& t : tensors) {
        const std::size_t n = w.add_tensor(t.name, t.dtype, t.shape);
        std::string d(n, '\0');
        for (char& c : d) c = static_cast<char>(rng());
        data.push_back(d);
      }
      for (const std::string& d : data) w.write_tensor(as_bytes(d));
      CHECK_FALSE(fs::exists(path));  // only the temporary exists until finish()
      w.finish();
    }
    CHECK_FALSE(fs::exists(path + ".tmp"));
    const GgufFile f(path);
    CHECK(f.version() == 3);
    CHECK(f.alignment() == alignment);
    CHECK(f.get_u32("u8") == 7);
    CHECK(f.get_u32("u32") == 123456);
    CHECK(f.get_i32("i32") == -42);
    CHECK(f.get_u64("u64") == (1ull << 50));
    CHECK(f.get_f32("f32") == 0.1f);
    CHECK_FALSE(f.get_bool("bool"));
    CHECK(f.get_string("s") == "text");
    CHECK(f.get_string_array("sa") == std::vector<std::string>{"x", "", "▁y"});
    CHECK(f.get_f32_array("fa") == std::vector<float>{1.f, -2.5f});
    CHECK(f.get_i32_array("ia") == std::vector<std::int32_t>{3, -4, 5});
    CHECK(f.has("general.alignment") == (alignment != 32));
    REQUIRE(f.tensors().size() == tensors.size());
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const io::GgufTensor& t = f.tensors()[i];
      CAPTURE(t.name);
      CHECK(t.name == tensors[i].name);
      CHECK(t.dtype == tensors[i].dtype);
      CHECK(t.shape == tensors[i].shape);
      CHECK(t.ne == std::vector<std::int64_t>(tensors[i].shape.rbegin(), tensors[i].shape.rend()));
      CHECK(t.ggml_type == io::ggml_type_of(t.dtype));
      CHECK(t.offset % alignment == 0);
      CHECK(reinterpret_cast<std::uintptr_t>(t.data.data()) % alignment == 0);
      CHECK(std::string(reinterpret_cast<const char*>(t.data.data()), t.data.size()) == data[i]);
    }
    CHECK(f.find_tensor("q6k") == &f.tensors().back());
    CHECK(f.find_tensor("nope") == nullptr);
  }
}

TEST_CASE("writer usage errors leave no file behind") {
  const std::string path = (tmp_dir() / "bad_writer.gguf").string();
  CHECK_THROWS_AS(GgufWriter(path, 48), UsageError);
  {
    GgufWriter w(path);
    w.add_u32("k", 1);
    CHECK_THROWS_AS(w.add_u32("k", 2), UsageError);
    CHECK_THROWS_WITH_AS(w.add_tensor("q", DType::Q8_0, {2, 33}), doctest::Contains("block size 32"), UsageError);
    CHECK_THROWS_AS(w.add_tensor("z", DType::F32, {0}), UsageError);
    CHECK_THROWS_AS(w.add_tensor("five", DType::F32, {1, 1, 1, 1, 1}), UsageError);
    CHECK(w.add_tensor("a", DType::F32, {2}) == 8);
    CHECK_THROWS_AS(w.add_tensor("a", DType::F32, {2}), UsageError);
    w.add_tensor("b", DType::F16, {4});
    CHECK_THROWS_WITH_AS(w.write_tensor(as_bytes(std::string(7, 'x'))), doctest::Contains("needs 8 bytes, got 7"), UsageError);
    w.write_tensor(as_bytes(std::string(8, 'x')));
    CHECK_THROWS_AS(w.add_u32("late", 1), UsageError);
    CHECK_THROWS_WITH_AS(w.finish(), doctest::Contains("tensor b is missing"), UsageError);
  }
  CHECK_FALSE(fs::exists(path));
  CHECK_FALSE(fs::exists(path + ".tmp"));
}

TEST_CASE("reader error matrix: each fault is an InputError naming the file and what is wrong") {
  expect_input_error("empty.gguf", "", {"bad magic", "empty file"});
  expect_input_error("magic.gguf", "GGML" + small_file().substr(4), {"bad magic", "47474d4c"});
  expect_input_error("v1.gguf", Raw().header(1, 0, 0).b, {"version 1 is not supported"});
  expect_input_error("v4.gguf", Raw().header(4, 0, 0).b, {"unsupported GGUF version 4"});
  expect_input_error("bigendian.gguf", Raw().header(0x03000000u, 0, 0).b, {"big-endian"});

  // Cut anywhere: always an error, never a crash. (Cut inside the data: "past the end".)
  const std::string good = small_file();
  REQUIRE_NOTHROW(GgufFile(write_file("good.gguf", good)));
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    const std::string path = write_file("cut.gguf", good.substr(0, n));
    CHECK_THROWS_AS(GgufFile{path}, InputError);
  }
  expect_input_error("cut_counts.gguf", good.substr(0, 30), {"key/value count 2 cannot fit in the 6 bytes"});
  expect_input_error("cut_key.gguf", good.substr(0, 80), {"key 1 at offset 69 has length 6 but only 3 bytes remain"});
  expect_input_error("cut_type.gguf", good.substr(0, 85), {"truncated at offset 83 reading the type of key \"answer\""});
  expect_input_error("cut_data.gguf", good.substr(0, good.size() - 1),
                     {"tensor \"b\"", "runs past the end of the data section", "truncated file?"});

  const auto one_tensor = [](std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset, std::size_t bytes) {
    Raw r;
    r.header(3, 1, 0).tensor("w", std::move(ne), type, offset).pad().data(bytes);
    return r.b;
  };
  expect_input_error("q5_1.gguf", one_tensor({32}, 7, 0, 24), {"tensor \"w\"", "Q5_1 (id 7) is not supported", "supported: F32"});
  expect_input_error("type999.gguf", one_tensor({32}, 999, 0, 24), {"unknown (id 999) is not supported"});
  expect_input_error("misaligned.gguf", one_tensor({4}, 0, 8, 64), {"tensor \"w\"", "offset 8 is misaligned"});
  expect_input_error("past_end.gguf", one_tensor({4}, 0, 32, 40), {"tensor \"w\"", "data [32, 48) runs past the end"});
  expect_input_error("block.gguf", one_tensor({33, 2}, 8, 0, 200), {"ne[0] = 33 is not a multiple of the block size 32"});
  expect_input_error("zero_dim.gguf", one_tensor({4, 0}, 0, 0, 64), {"ne[1] = 0", "must be positive"});
  expect_input_error("neg_dim.gguf", one_tensor({~0ull}, 0, 0, 64), {"must be positive"});
  expect_input_error("overflow.gguf", one_tensor({1ull << 32, 1ull << 32}, 0, 0, 64), {"overflows"});
  expect_input_error("bytes_overflow.gguf", one_tensor({1ull << 62}, 0, 0, 64), {"overflows"});
  expect_input_error("five_dims.gguf", one_tensor({1, 1, 1, 1, 1}, 0, 0, 64), {"5 dimensions"});
  {
    Raw r;
    r.header(3, 2, 0).tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 0).pad().data(32);
    expect_input_error("overlap.gguf", r.b, {"overlaps tensor"});
    Raw d;
    d.header(3, 2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).pad().data(64);
    expect_input_error("dup_tensor.gguf", d.b, {"tensor \"a\" appears more than once"});
  }
  expect_input_error("kv_huge.gguf", Raw().header(3, 0, 1ull << 60).b, {"key/value count 1152921504606846976 cannot fit"});
  expect_input_error("tensors_huge.gguf", Raw().header(3, ~0ull, 0).b, {"tensor count", "cannot fit"});
  expect_input_error("key_len.gguf", Raw().header(3, 0, 1).u64(~0ull).data(16).b, {"key 0 at offset 24 has length 18446744073709551615"});
  {
    Raw r;
    r.header(3, 0, 1).key("s", GgufType::String).u64(1ull << 40).data(8);
    expect_input_error("string_len.gguf", r.b, {"key \"s\"", "has length 1099511627776 but only 8 bytes remain"});
    Raw a;
    a.header(3, 0, 1).key("arr", GgufType::Array).u32(4).u64(1ull << 61).data(8);
    expect_input_error("array_len.gguf", a.b, {"key \"arr\"", "array of 2305843009213693952 u32 values", "cannot fit"});
    Raw t;
    t.header(3, 0, 1).key("k", GgufType::Array).u32(13).u64(0);
    expect_input_error("array_type.gguf", t.b, {"array element type 13"});
    Raw v;
    v.header(3, 0, 1).key("k", static_cast<GgufType>(77)).u32(0);
    expect_input_error("value_type.gguf", v.b, {"key \"k\" has value type 77"});
    Raw bo;
    bo.header(3, 0, 1).key("flag", GgufType::Bool).le<std::uint8_t>(2);
    expect_input_error("bool.gguf", bo.b, {"bool value 2"});
    Raw dk;
    dk.header(3, 0, 2).key("k", GgufType::U8).le<std::uint8_t>(1).key("k", GgufType::U8).le<std::uint8_t>(2);
    expect_input_error("dup_key.gguf", dk.b, {"key \"k\" appears more than once"});
    Raw deep;
    deep.header(3, 0, 1).key("deep", GgufType::Array);
    for (int i = 0; i < 20; ++i) deep.u32(9).u64(1);
    deep.u32(0).u64(0);
    expect_input_error("deep.gguf", deep.b, {"nested more than 16 deep"});
  }
  for (std::uint32_t align : {0u, 48u, 3u}) {
    Raw r;
    r.header(3, 0, 1).key("general.alignment", GgufType::U32).u32(align);
    expect_input_error("align.gguf", r.b, {"general.alignment", "power of two"});
  }
  Raw as;
  as.header(3, 0, 1).key("general.alignment", GgufType::String).str("32");
  expect_input_error("align_type.gguf", as.b, {"general.alignment", "a string"});
}

// ---- model level ------------------------------------------------------------------------------

namespace {

struct TinySpec {
  int dim = 64, hidden = 96, layers = 2, heads = 4, kv_heads = 2, vocab = 300, ctx = 64;
  bool tied = false;
  DType matrix = DType::F32;
};

// Pieces of a small SentencePiece-style vocabulary: <unk>, <s>, </s>, 256 bytes, then words.
std::vector<tok::Piece> tiny_pieces(int vocab) {
  std::vector<tok::Piece> p = {{"<unk>", 0, tok::PieceType::Unknown}, {"<s>", 0, tok::PieceType::Control},
                               {"</s>", 0, tok::PieceType::Control}};
  for (int i = 0; i < 256; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", i);
    p.push_back({name, 0, tok::PieceType::Byte});
  }
  const char* words[] = {"▁h", "▁he", "ll", "▁hell", "o", "▁hello", "▁w", "or", "ld", "▁world"};
  for (int i = 0; static_cast<int>(p.size()) < vocab; ++i)
    p.push_back({i < 10 ? words[i] : "▁x" + std::to_string(i), -static_cast<float>(i), tok::PieceType::Normal});
  return p;
}

// A llama GGUF with deterministic weights (rows stored in the interleaved order, as llama.cpp
// writes them). Values of a quantized matrix are arbitrary bytes with finite f16 scales.
std::string write_tiny_gguf(const std::string& name, const TinySpec& s,
                            const std::function<void(GgufWriter&)>& extra_meta = {},
                            const std::function<void(model::MistralConfig&)>& tweak_config = {}) {
  const std::string path = (tmp_dir() / name).string();
  model::MistralConfig c;
  c.dim = s.dim;
  c.hidden_dim = s.hidden;
  c.n_layers = s.layers;
  c.n_heads = s.heads;
  c.n_kv_heads = s.kv_heads;
  c.head_dim = s.dim / s.heads;
  c.vocab_size = s.vocab;
  c.norm_eps = 1e-5f;
  c.max_position = s.ctx;
  if (tweak_config) tweak_config(c);  // the metadata only: the tensors keep the spec's shapes
  const tok::Tokenizer tk = tok::Tokenizer::from_pieces(tiny_pieces(s.vocab), 1, 2, 0, true, "tiny");
  GgufWriter w(path);
  model::write_gguf_metadata(w, c, &tk);
  if (extra_meta) extra_meta(w);
  struct T {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
  };
  std::vector<T> ts = {{"token_embd.weight", s.matrix, {s.vocab, s.dim}}};
  const int q = s.dim, kv = s.kv_heads * (s.dim / s.heads);
  for (int l = 0; l < s.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    ts.push_back({b + "attn_norm.weight", DType::F32, {s.dim}});
    ts.push_back({b + "attn_q.weight", s.matrix, {q, s.dim}});
    ts.push_back({b + "attn_k.weight", s.matrix, {kv, s.dim}});
    ts.push_back({b + "attn_v.weight", s.matrix, {kv, s.dim}});
    ts.push_back({b + "attn_output.weight", s.matrix, {s.dim, q}});
    ts.push_back({b + "ffn_norm.weight", DType::F32, {s.dim}});
    ts.push_back({b + "ffn_gate.weight", s.matrix, {s.hidden, s.dim}});
    ts.push_back({b + "ffn_up.weight", s.matrix, {s.hidden, s.dim}});
    ts.push_back({b + "ffn_down.weight", s.matrix, {s.dim, s.hidden}});
  }
  ts.push_back({"output_norm.weight", DType::F32, {s.dim}});
  if (!s.tied) ts.push_back({"output.weight", s.matrix, {s.vocab, s.dim}});
  std::vector<std::size_t> sizes;
  for (const T& t : ts) sizes.push_back(w.add_tensor(t.name, t.dtype, t.shape));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  for (std::size_t i = 0; i < ts.size(); ++i) {
    std::string d(sizes[i], '\0');
    if (ts[i].dtype == DType::F32) {
      for (std::size_t k = 0; k < d.size(); k += 4) {
        const float v = ts[i].shape.size() == 1 ? 1.0f + u(rng) : u(rng);
        std::memcpy(d.data() + k, &v, 4);
      }
    } else {
      for (char& ch : d) ch = static_cast<char>(rng() & 0x3b);  // keeps every f16 scale finite and small
    }
    w.write_tensor(as_bytes(d));
  }
  w.finish();
  return path;
}

}  // namespace

TEST_CASE("Q/K row order: interleaved <-> half-split are inverse permutations") {
  const int hd = 8;
  // Interleaved (stored) row 2i is HF row i, row 2i+1 is HF row hd/2 + i.
  CHECK(model::rope_source_row(0, hd, model::RopeRowOrder::Interleaved) == 0);
  CHECK(model::rope_source_row(1, hd, model::RopeRowOrder::Interleaved) == 4);
  CHECK(model::rope_source_row(2, hd, model::RopeRowOrder::Interleaved) == 1);
  CHECK(model::rope_source_row(hd + 3, hd, model::RopeRowOrder::Interleaved) == hd + 5);
  CHECK(model::rope_source_row(4, hd, model::RopeRowOrder::HalfSplit) == 1);
  std::vector<std::byte> rows(3 * hd * 5), there(rows.size()), back(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<std::byte>(i);
  model::reorder_rope_rows(rows.data(), there.data(), 3 * hd, 5, hd, model::RopeRowOrder::Interleaved);
  CHECK(there != rows);
  model::reorder_rope_rows(there.data(), back.data(), 3 * hd, 5, hd, model::RopeRowOrder::HalfSplit);
  CHECK(back == rows);
}

TEST_CASE("config and tokenizer from GGUF metadata, and back") {
  const std::string path = write_tiny_gguf("meta.gguf", {});
  const GgufFile f(path);
  const model::MistralConfig c = model::config_from_gguf(f);
  CHECK(c.dim == 64);
  CHECK(c.hidden_dim == 96);
  CHECK(c.n_layers == 2);
  CHECK(c.n_heads == 4);
  CHECK(c.n_kv_heads == 2);
  CHECK(c.head_dim == 16);
  CHECK(c.vocab_size == 300);
  CHECK(c.max_position == 64);
  CHECK(c.norm_eps == 1e-5f);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.sliding_window == 0);
  CHECK(c.architecture == "llama");
  CHECK_FALSE(c.tie_embeddings);
  const tok::Tokenizer t = model::tokenizer_from_gguf(f);
  const tok::Tokenizer want = tok::Tokenizer::from_pieces(tiny_pieces(300), 1, 2, 0, true, "want");
  CHECK(t.pieces() == want.pieces());
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  CHECK(t.encode("hello world", true) == want.encode("hello world", true));
  CHECK(t.encode("hello world", true) == std::vector<std::int32_t>{1, 264, 265, 266, 267});

  // A sliding window makes it a Mistral.
  const GgufFile sw(write_tiny_gguf("window.gguf", {}, [](GgufWriter& w) { w.add_u32("llama.attention.sliding_window", 8); }));
  CHECK(model::config_from_gguf(sw).sliding_window == 8);
  CHECK(model::config_from_gguf(sw).architecture == "mistral");
  // No output.weight: tied embeddings.
  const GgufFile tied(write_tiny_gguf("tied.gguf", {.tied = true}));
  CHECK(model::config_from_gguf(tied).tie_embeddings);
}

namespace {
// The message of the InputError that f() throws (empty when it does not throw).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return {};
}

void check_contains(const std::string& msg, const std::vector<std::string>& needles) {
  CAPTURE(msg);
  REQUIRE_FALSE(msg.empty());
  for (const auto& n : needles) {
    CAPTURE(n);
    CHECK(msg.find(n) != std::string::npos);
  }
}

// A metadata-only file: the given keys, no tensors.
std::string meta_only(const std::string& name, const std::function<void(GgufWriter&)>& meta) {
  const std::string path = (tmp_dir() / name).string();
  GgufWriter w(path);
  meta(w);
  w.finish();
  return path;
}
}  // namespace

TEST_CASE("metadata that contradicts the tensors or itself: InputError naming key and tensor, expected and actual") {
  const auto config_error = [](const std::string& path) {
    return error_of([&] { (void)model::config_from_gguf(GgufFile(path)); });
  };
  const auto load_error = [](const std::string& path) { return error_of([&] { (void)model::load_model(path, "", true); }); };

  check_contains(config_error(write_tiny_gguf("dim.gguf", {}, {}, [](model::MistralConfig& c) { c.dim = 32; c.head_dim = 8; })),
                 {"tensor token_embd.weight has shape [300, 64] but the metadata implies [300, 32]", "llama.embedding_length"});
  check_contains(config_error(write_tiny_gguf("vocab.gguf", {}, {}, [](model::MistralConfig& c) { c.vocab_size = 301; })),
                 {"\"llama.vocab_size\" = 301 but \"tokenizer.ggml.tokens\" has 300 tokens"});
  check_contains(load_error(write_tiny_gguf("ffn.gguf", {}, {}, [](model::MistralConfig& c) { c.hidden_dim = 128; })),
                 {"tensor blk.0.ffn_gate.weight has shape [96, 64], expected [128, 64]", "llama.feed_forward_length"});
  check_contains(load_error(write_tiny_gguf("kv.gguf", {}, {}, [](model::MistralConfig& c) { c.n_kv_heads = 4; })),
                 {"tensor blk.0.attn_k.weight has shape [32, 64], expected [64, 64]", "llama.attention.head_count_kv"});
  check_contains(load_error(write_tiny_gguf("layers.gguf", {}, {}, [](model::MistralConfig& c) { c.n_layers = 1; })),
                 {"\"llama.block_count\" = 1 but the file has tensors for 2 layers (blk.0 to blk.1)"});
  // Found by fuzz_gguf: a huge block_count sized the layer table before any tensor was checked.
  check_contains(load_error(write_tiny_gguf("more_layers.gguf", {}, {}, [](model::MistralConfig& c) { c.n_layers = 1 << 30; })),
                 {"\"llama.block_count\" = 1073741824 but the file has tensors for 2 layers"});
  check_contains(load_error(write_tiny_gguf("heads.gguf", {}, {}, [](model::MistralConfig& c) { c.n_heads = 3; })),
                 {"not divisible"});

  check_contains(config_error(meta_only("arch.gguf", [](GgufWriter& w) { w.add_string("general.architecture", "gpt2"); })),
                 {"\"general.architecture\" is \"gpt2\""});
  check_contains(config_error(meta_only("noarch.gguf", [](GgufWriter& w) { w.add_u32("x", 1); })),
                 {"required key \"general.architecture\" is missing"});
  check_contains(config_error(meta_only("partial_rope.gguf", [](GgufWriter& w) {
                   w.add_string("general.architecture", "llama");
                   for (const char* k : {"llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
                                         "llama.context_length"})
                     w.add_u32(k, 64);
                   w.add_u32("llama.attention.head_count", 4);
                   w.add_u32("llama.rope.dimension_count", 8);
                 })),
                 {"\"llama.rope.dimension_count\" = 8 but the head size is 16"});
  check_contains(config_error(meta_only("no_eps.gguf", [](GgufWriter& w) {
                   w.add_string("general.architecture", "llama");
                   for (const char* k : {"llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
                                         "llama.context_length"})
                     w.add_u32(k, 64);
                   w.add_i32("llama.attention.head_count", -4);
                 })),
                 {"key \"llama.attention.head_count\" value -4 (i32) does not fit in u32"});
}

TEST_CASE("tokenizer metadata errors") {
  const auto tok_error = [](const std::function<void(GgufWriter&)>& meta, const std::string& name) {
    return error_of([&] { (void)model::tokenizer_from_gguf(GgufFile(meta_only(name, meta))); });
  };
  check_contains(tok_error([](GgufWriter& w) { w.add_string("tokenizer.ggml.model", "gpt2"); }, "t_gpt2.gguf"),
                 {"\"tokenizer.ggml.model\" is \"gpt2\""});
  check_contains(tok_error([](GgufWriter& w) { w.add_string("tokenizer.ggml.model", "llama"); }, "t_none.gguf"),
                 {"required key \"tokenizer.ggml.tokens\" is missing"});
  check_contains(tok_error([](GgufWriter& w) {
                   w.add_string("tokenizer.ggml.model", "llama");
                   w.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>"});
                   w.add_f32_array("tokenizer.ggml.scores", std::vector<float>{0.f, 0.f});
                 }, "t_scores.gguf"),
                 {"\"tokenizer.ggml.scores\" has 2 entries but \"tokenizer.ggml.tokens\" has 3"});
  check_contains(tok_error([](GgufWriter& w) {
                   w.add_string("tokenizer.ggml.model", "llama");
                   w.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>"});
                   w.add_i32_array("tokenizer.ggml.token_type", std::vector<std::int32_t>{2, 3, 9});
                 }, "t_types.gguf"),
                 {"\"tokenizer.ggml.token_type\" element 2 is 9"});
  check_contains(tok_error([](GgufWriter& w) {
                   w.add_string("tokenizer.ggml.model", "llama");
                   w.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>"});
                   w.add_u32("tokenizer.ggml.eos_token_id", 3);
                 }, "t_eos.gguf"),
                 {"\"tokenizer.ggml.eos_token_id\" = 3 is not a token id (3 tokens)"});
  // add_bos_token false is accepted; weft's tokenizer keeps the BOS id (callers choose whether to add it).
  const tok::Tokenizer nb = model::tokenizer_from_gguf(GgufFile(meta_only("t_nobos.gguf", [](GgufWriter& w) {
    w.add_string("tokenizer.ggml.model", "llama");
    w.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "▁a"});
    w.add_bool("tokenizer.ggml.add_bos_token", false);
  })));
  CHECK(nb.bos_id() == 1);
  CHECK(nb.encode("a", false) == std::vector<std::int32_t>{3});
}

TEST_CASE("load_model on a GGUF: views in the stored dtype, q/k rows unpermuted, tied output, --no-mmap") {
  for (const DType dt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    for (const bool mmap : {true, false}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(mmap);
      const std::string path = write_tiny_gguf("load_" + std::string(dtype_name(dt)) + ".gguf", {.tied = mmap, .matrix = dt});
      const model::LoadedModel m = model::load_model(path, "", mmap);
      CHECK(m.format == "gguf");
      CHECK(m.config.vocab_size == 300);
      REQUIRE(m.tokenizer != nullptr);
      CHECK(m.tokenizer->vocab_size() == 300);
      const auto& L = m.weights.layers[1];
      CHECK(L.wq.dtype == dt);
      CHECK(L.wq.rows == 64);
      CHECK(L.wq.cols == 64);
      CHECK(L.wq.row_bytes() == dtype_bytes(dt, 64));
      CHECK(L.w_down.cols == 96);
      CHECK(L.attn_norm.dtype == DType::F32);
      CHECK((m.weights.lm_head.data == m.weights.embedding.data) == mmap);
      // q/k rows: view row r is the file's row rope_source_row(r, ..., HalfSplit).
      const GgufFile f(path);
      const io::GgufTensor* k = f.find_tensor("blk.1.attn_k.weight");
      REQUIRE(k != nullptr);
      const std::size_t rb = L.wk.row_bytes();
      for (std::int64_t r = 0; r < L.wk.rows; ++r) {
        const std::int64_t from = model::rope_source_row(r, 16, model::RopeRowOrder::HalfSplit);
        CHECK(std::memcmp(L.wk.row(r), k->data.data() + from * rb, rb) == 0);
      }
      // v is untouched and, mapped, points into the file.
      if (mmap) CHECK(std::memcmp(L.wv.data, f.find_tensor("blk.1.attn_v.weight")->data.data(), L.wv.bytes()) == 0);
    }
  }
  // The GGUF magic is enough, whatever the name.
  const std::string plain = write_tiny_gguf("model_no_suffix", {});
  CHECK(model::load_model(plain, "", true).format == "gguf");
}

TEST_CASE("load_model with repack stores the quantized matrices interleaved, every row as in the file") {
  // Vocabulary 300: 18 whole groups of 16 rows and 12 plain rows in the lm_head.
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    CAPTURE(dtype_name(t));
    const std::string path = write_tiny_gguf(std::string("il_") + std::string(dtype_name(t)) + ".gguf", {.matrix = t});
    const model::LoadedModel plain = model::load_model(path, "", true, false);
    const model::LoadedModel il = model::load_model(path, "", true, true);
    const int want = kernels::reads_interleaved(t) ? kInterleaveRows : 0;
    std::vector<const TensorView*> a = {&plain.weights.lm_head}, b = {&il.weights.lm_head};
    for (int l = 0; l < 2; ++l)
      for (auto m : {&model::LayerWeights::wq, &model::LayerWeights::wk, &model::LayerWeights::w_up,
                     &model::LayerWeights::w_down}) {
        a.push_back(&(plain.weights.layers[l].*m));
        b.push_back(&(il.weights.layers[l].*m));
      }
    for (std::size_t i = 0; i < a.size(); ++i) {
      CAPTURE(i);
      REQUIRE(a[i]->dtype == t);
      CHECK(a[i]->interleave == 0);
      CHECK(b[i]->interleave == want);
      if (want != 0) CHECK(std::memcmp(a[i]->data, b[i]->data, a[i]->bytes()) != 0);
      std::vector<std::byte> row(a[i]->row_bytes());
      bool same = true;
      for (std::int64_t r = 0; r < a[i]->rows; ++r) {
        read_row(*b[i], r, row.data());
        same = same && std::memcmp(row.data(), a[i]->row(r), row.size()) == 0;
      }
      CHECK(same);
    }
  }
}

TEST_CASE("quantize_model writes the same bytes on one thread and on several") {
  // Widths of 256 and 512: whole blocks for every type, the k-quants included; the vocabulary of
  // 300 rows splits unevenly.
  const std::string in = write_tiny_gguf("q_threads.gguf", {.dim = 256, .hidden = 512});
  for (const char* type : {"q8_0", "q4_0", "q4_k_m", "bf16"}) {
    CAPTURE(type);
    std::string out[2];
    for (int i = 0; i < 2; ++i) {
      QuantizeOptions o = qopt(type);
      o.threads = i == 0 ? 1 : 2;
      out[i] = (tmp_dir() / ("q_threads_" + std::string(type) + std::to_string(o.threads) + ".gguf")).string();
      CHECK(quantize_model(in, out[i], o).fallbacks == 0);
    }
    std::ifstream a(out[0], std::ios::binary), b(out[1], std::ios::binary);
    const std::string x((std::istreambuf_iterator<char>(a)), {}), y((std::istreambuf_iterator<char>(b)), {});
    CHECK(x.size() > 300 * 256 / 2);
    CHECK(x == y);
  }
}

TEST_CASE("quantize_model: GGUF -> GGUF in f32/bf16/f16 round-trips the weights, metadata and tokenizer") {
  const std::string in = write_tiny_gguf("q_in.gguf", {});
  const model::LoadedModel a = model::load_model(in, "", true);
  for (const char* type : {"f32", "bf16", "f16"}) {
    CAPTURE(type);
    const std::string out = (tmp_dir() / (std::string("q_out_") + type + ".gguf")).string();
    std::size_t calls = 0, last_done = 0, last_total = 0;
    QuantizeOptions o;
    o.type = type;
    o.progress = [&](std::size_t d, std::size_t t) {
      ++calls;
      CHECK(d >= last_done);
      last_done = d;
      last_total = t;
    };
    const QuantizeSummary s = quantize_model(in, out, o);
    CHECK(s.tensors == 1 + 2 * 9 + 2);
    CHECK(calls == s.tensors);
    CHECK(last_done == last_total);
    CHECK(s.bytes_in == last_total);
    CHECK(s.bytes_out == fs::file_size(out));
    CHECK(s.fallbacks == 0);
    const model::LoadedModel b = model::load_model(out, "", true);
    CHECK(b.config.dim == a.config.dim);
    CHECK(b.config.n_kv_heads == a.config.n_kv_heads);
    CHECK(b.tokenizer->pieces() == a.tokenizer->pieces());
    const GgufFile f(out);
    CHECK(f.get_string("general.architecture") == "llama");
    CHECK(f.find_tensor("blk.0.attn_norm.weight")->dtype == DType::F32);
    const DType want = std::string(type) == "f32" ? DType::F32 : std::string(type) == "bf16" ? DType::BF16 : DType::F16;
    CHECK(f.find_tensor("blk.0.attn_q.weight")->dtype == want);
    // Element by element, in weft's (unpermuted) order: the conversion of the same value.
    for (int l = 0; l < 2; ++l) {
      for (auto member : {&model::LayerWeights::wq, &model::LayerWeights::wk, &model::LayerWeights::w_down}) {
        const TensorView& x = a.weights.layers[l].*member;
        const TensorView& y = b.weights.layers[l].*member;
        REQUIRE(y.dtype == want);
        bool same = true;
        for (std::int64_t i = 0; i < x.numel() && same; ++i) {
          const float v = x.f32()[static_cast<std::size_t>(i)];
          std::uint16_t h;
          if (want == DType::F32) {
            same = y.f32()[static_cast<std::size_t>(i)] == v;
          } else {
            std::memcpy(&h, static_cast<const std::byte*>(y.data) + 2 * i, 2);
            same = h == (want == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v));
          }
        }
        CHECK(same);
      }
    }
  }
  // The bf16 file converted again to bf16 has byte-identical tensors (same type: bytes copied;
  // the permutation there and back is the identity).
  const std::string again = (tmp_dir() / "q_again.gguf").string();
  quantize_model((tmp_dir() / "q_out_bf16.gguf").string(), again, qopt("bf16"));
  const GgufFile x((tmp_dir() / "q_out_bf16.gguf").string()), y(again);
  REQUIRE(x.tensors().size() == y.tensors().size());
  for (std::size_t i = 0; i < x.tensors().size(); ++i) {
    CHECK(x.tensors()[i].name == y.tensors()[i].name);
    CHECK(std::memcmp(x.tensors()[i].data.data(), y.tensors()[i].data.data(), x.tensors()[i].data.size()) == 0);
  }

  CHECK_THROWS_WITH_AS(quantize_model(in, (tmp_dir() / "x.gguf").string(), qopt("q3_k")),
                       doctest::Contains("unknown type \"q3_k\""), UsageError);
  CHECK_THROWS_AS(quantize_model(in, in, qopt("f32")), UsageError);
  CHECK_THROWS_AS(quantize_model((tmp_dir() / "missing.gguf").string(), (tmp_dir() / "x.gguf").string(), qopt("f32")),
                  InputError);
  CHECK_FALSE(fs::exists(tmp_dir() / "x.gguf"));
}
