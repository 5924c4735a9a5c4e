// The tokenizer against the real vocabularies and golden outputs in ../shared:
// tokenizer.model (SentencePiece library ids), tok512.bin (llama2.c encode semantics),
// tokenizer.bin (the same LLaMA vocabulary in llama2.c's format), and stories260K's greedy text.
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/mapped_file.hpp"
#include "testing.hpp"
#include "tokenizer/tokenizer.hpp"
#include "weft/error.hpp"

using namespace weft;
using namespace weft::tok;
using nlohmann::json;

namespace {

std::string model_path(const std::string& name) { return (weft::testing::shared_dir() / "models" / name).string(); }

json golden(const std::string& name) {
  std::ifstream in(weft::testing::shared_dir() / "golden" / name);
  REQUIRE(in.good());
  return json::parse(in);
}

// Checks every golden case: encode(text, add_bos) == ids. Returns the number of cases.
int check_golden(const Tokenizer& t, const json& g) {
  REQUIRE(g.at("cases").size() > 0);
  int n = 0;
  for (const json& c : g.at("cases")) {
    const std::string text = c.at("text");
    INFO("text: '" << text << "'");
    CHECK(t.encode(text, g.at("add_bos").get<bool>()) == c.at("ids").get<std::vector<int32_t>>());
    ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("tokenizer.model: metadata") {
  const auto t = Tokenizer::from_sentencepiece_file(model_path("tokenizer.model"));
  CHECK(t.vocab_size() == 32000);
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  CHECK(t.unk_id() == 0);
  CHECK(t.add_dummy_prefix());
  CHECK_FALSE(t.remove_extra_whitespaces());
  CHECK(t.piece(0).type == PieceType::Unknown);
  CHECK(t.piece(1).text == "<s>");
  CHECK(t.piece(1).type == PieceType::Control);
  CHECK(t.piece(13).text == "<0x0A>");
  CHECK(t.piece(13).type == PieceType::Byte);
  CHECK(t.piece(29871).text == "\xE2\x96\x81");
  CHECK(t.token_bytes(13) == "\n");
  CHECK(t.token_bytes(9038) == " Once");
}

TEST_CASE("tokenizer.model encodes like the SentencePiece library") {
  const auto t = Tokenizer::from_sentencepiece_file(model_path("tokenizer.model"));
  CHECK(check_golden(t, golden("tokenizer_model_encode.json")) == 25);
}

TEST_CASE("tok512.bin encodes like llama2.c") {
  const auto t = Tokenizer::from_llama2c_file(model_path("tok512.bin"));
  CHECK(t.vocab_size() == 512);
  CHECK(t.piece(410).text == "\xE2\x96\x81");
  CHECK(t.piece(3).type == PieceType::Byte);
  CHECK(check_golden(t, golden("tok512_encode.json")) == 25);
}

TEST_CASE("tokenizer.bin and tokenizer.model are the same vocabulary and encode identically") {
  const auto model = Tokenizer::from_sentencepiece_file(model_path("tokenizer.model"));
  const auto bin = Tokenizer::from_llama2c_file(model_path("tokenizer.bin"));
  REQUIRE(bin.vocab_size() == model.vocab_size());
  int differ = 0;
  for (int32_t i = 0; i < model.vocab_size(); ++i) {
    const Piece& a = model.piece(i);
    const Piece& b = bin.piece(i);
    differ += a.text != b.text || a.score != b.score || a.type != b.type;
  }
  CHECK(differ == 0);
  const json g = golden("tokenizer_model_encode.json");
  CHECK(check_golden(bin, g) == 25);
  for (const json& c : g.at("cases")) {
    const std::string s = c.at("text");
    CHECK(bin.encode(s, false) == model.encode(s, false));
  }
}

TEST_CASE("decode: stories260K greedy text, and round trips of the golden texts") {
  const auto t = Tokenizer::from_llama2c_file(model_path("tok512.bin"));
  const json g = golden("stories260K_greedy.json");
  const auto prompt_ids = g.at("prompt_ids").get<std::vector<int32_t>>();
  const auto greedy_ids = g.at("greedy_ids").get<std::vector<int32_t>>();
  const std::string prompt = g.at("prompt"), text = g.at("greedy_text");
  CHECK(t.encode(prompt, true) == prompt_ids);
  // The golden text is the continuation only; it starts with "," so no space is lost.
  std::vector<int32_t> all = prompt_ids;
  all.insert(all.end(), greedy_ids.begin(), greedy_ids.end());
  CHECK(decode(t, all) == prompt + text);
  CHECK(decode(t, greedy_ids) == text);
  StreamDecoder d(t);
  std::string streamed;
  for (int32_t id : all) streamed += d.push(id);
  CHECK(streamed + d.flush() == prompt + text);
  // A continuation decoded on its own keeps its leading space when asked to.
  StreamDecoder cont(t, false);
  CHECK(cont.push(greedy_ids[1]) == " there");

  const auto model = Tokenizer::from_sentencepiece_file(model_path("tokenizer.model"));
  for (const auto& [tok, name] : {std::pair{&t, "tok512_encode.json"}, std::pair{&model, "tokenizer_model_encode.json"}}) {
    const json cases = golden(name).at("cases");
    for (const json& c : cases) {
      const std::string s = c.at("text");
      INFO(name << ": '" << s << "'");
      CHECK(decode(*tok, c.at("ids").get<std::vector<int32_t>>()) == s);
    }
  }
}

TEST_CASE("the LLaMA vocabulary survives write_sentencepiece_model") {
  const auto model = Tokenizer::from_sentencepiece_file(model_path("tokenizer.model"));
  const std::string bytes = write_sentencepiece_model(model.pieces(), 0, 1, 2, true, true);
  const auto again = Tokenizer::from_sentencepiece_bytes(std::as_bytes(std::span(bytes.data(), bytes.size())), "rewritten");
  CHECK(again.pieces() == model.pieces());
  CHECK(check_golden(again, golden("tokenizer_model_encode.json")) == 25);
}

TEST_CASE("truncated and corrupted real files give InputError") {
  const MappedFile file(model_path("tokenizer.model"));
  const auto bytes = file.bytes();
  for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{100}, bytes.size() / 2, bytes.size() - 1}) {
    INFO("prefix of " << n << " bytes");
    CHECK_THROWS_AS(Tokenizer::from_sentencepiece_bytes(bytes.first(n), "cut.model"), InputError);
  }
  // A tokenizer.bin is not a tokenizer.model, and vice versa.
  const MappedFile bin(model_path("tok512.bin"));
  CHECK_THROWS_AS(Tokenizer::from_sentencepiece_bytes(bin.bytes(), "tok512.bin"), InputError);
  CHECK_THROWS_AS(Tokenizer::from_llama2c_file(model_path("tokenizer.model")), InputError);
}
