// Tokenizer tests that need no ../shared: BPE semantics on hand-made vocabularies, the protobuf
// reader and writer, malformed files, the streaming decoder and the BPE trainer.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "testing.hpp"
#include "tokenizer/tokenizer.hpp"
#include "weft/error.hpp"

using namespace weft;
using namespace weft::tok;

namespace {

const std::string kSp = "\xE2\x96\x81";  // ▁

// <unk>, <s>, </s>, the 256 byte pieces, then `extra` with the given scores and types.
std::vector<Piece> vocab(std::vector<Piece> extra) {
  std::vector<Piece> p = {{"<unk>", 0, PieceType::Unknown}, {"<s>", 0, PieceType::Control}, {"</s>", 0, PieceType::Control}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    p.push_back({name, 0, PieceType::Byte});
  }
  for (auto& e : extra) p.push_back(std::move(e));
  return p;
}

// Id of a piece by text (test vocabularies are small).
int32_t id_of(const Tokenizer& t, const std::string& text) {
  for (int32_t i = 0; i < t.vocab_size(); ++i)
    if (t.piece(i).text == text) return i;
  FAIL("no piece " << text);
  return -1;
}

std::vector<std::string> texts(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(t.piece(id).text);
  return out;
}

// A minimal protobuf builder, independent of the library's writer.
struct Proto {
  std::string s;
  Proto& varint(uint64_t v) {
    while (v >= 0x80) s += static_cast<char>((v & 0x7F) | 0x80), v >>= 7;
    s += static_cast<char>(v);
    return *this;
  }
  Proto& key(uint32_t field, int wt) { return varint((uint64_t{field} << 3) | static_cast<uint64_t>(wt)); }
  Proto& num(uint32_t field, int64_t v) { return key(field, 0).varint(static_cast<uint64_t>(v)); }
  Proto& bytes(uint32_t field, const std::string& b) {
    key(field, 2).varint(b.size());
    s += b;
    return *this;
  }
  Proto& f32(uint32_t field, float f) {
    key(field, 5);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    for (int i = 0; i < 4; ++i) s += static_cast<char>(bits >> (8 * i));
    return *this;
  }
};

Tokenizer parse(const std::string& bytes) {
  return Tokenizer::from_sentencepiece_bytes(std::as_bytes(std::span(bytes.data(), bytes.size())), "test.model");
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

std::filesystem::path temp_file(const std::string& name, const std::string& contents) {
  const auto path = std::filesystem::temp_directory_path() / ("weft_tok_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

std::string llama2c_bytes(const std::vector<std::pair<std::string, float>>& tokens, int32_t max_len = 16) {
  std::string out;
  const auto put32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) out += static_cast<char>(v >> (8 * i));
  };
  put32(static_cast<uint32_t>(max_len));
  for (const auto& [text, score] : tokens) {
    uint32_t bits;
    std::memcpy(&bits, &score, 4);
    put32(bits);
    put32(static_cast<uint32_t>(text.size()));
    out += text;
  }
  return out;
}

}  // namespace

TEST_CASE("BPE merges the best-scoring pair first, leftmost on ties") {
  // "abc": with "ab" and "bc" tied, the left pair wins; with "bc" better, it wins.
  const auto tie = Tokenizer::from_pieces(vocab({{"a", -5}, {"b", -5}, {"c", -5}, {"ab", -1}, {"bc", -1}}), 1, 2, 0, false, "t");
  CHECK(texts(tie, tie.encode("abc", false)) == std::vector<std::string>{"ab", "c"});
  const auto right = Tokenizer::from_pieces(vocab({{"a", -5}, {"b", -5}, {"c", -5}, {"ab", -2}, {"bc", -1}}), 1, 2, 0, false, "t");
  CHECK(texts(right, right.encode("abc", false)) == std::vector<std::string>{"a", "bc"});
  // A merge needs the concatenation to be a piece, not the parts: "abc" is reached via "ab"+"c".
  const auto chain = Tokenizer::from_pieces(vocab({{"ab", -1}, {"abc", -2}}), 1, 2, 0, false, "t");
  CHECK(texts(chain, chain.encode("abcab", true)) == std::vector<std::string>{"<s>", "abc", "ab"});
  // Scores decide, not the length of the result.
  const auto greedy = Tokenizer::from_pieces(vocab({{"aa", -1}, {"aaa", -3}, {"aaaa", -2}}), 1, 2, 0, false, "t");
  CHECK(texts(greedy, greedy.encode("aaaaa", false)) == std::vector<std::string>{"aaaa", "<0x61>"});
}

TEST_CASE("dummy prefix, spaces and byte fallback") {
  const auto t = Tokenizer::from_pieces(vocab({{kSp + "a", -1}, {kSp, -2}, {"a", -3}, {"b", -3}}), 1, 2, 0, true, "t");
  CHECK(texts(t, t.encode("a b", true)) == std::vector<std::string>{"<s>", kSp + "a", kSp, "b"});
  CHECK(t.encode("", true) == std::vector<int32_t>{1});
  CHECK(t.encode("", false).empty());
  CHECK(texts(t, t.encode(" ", false)) == std::vector<std::string>{kSp, kSp});
  // "é" (C3 A9) has no piece: its bytes; "<s>" in text is just characters.
  CHECK(texts(t, t.encode("a\xC3\xA9<s>", false)) ==
        std::vector<std::string>{kSp + "a", "<0xC3>", "<0xA9>", "<0x3C>", "<0x73>", "<0x3E>"});
  // Invalid UTF-8 becomes U+FFFD (EF BF BD) per bad byte, as SentencePiece's normalizer does.
  CHECK(texts(t, t.encode("a\xFF", false)) == std::vector<std::string>{kSp + "a", "<0xEF>", "<0xBF>", "<0xBD>"});
  CHECK(texts(t, t.encode("a\xE2\x96", false)).size() == 7);  // truncated sequence: two U+FFFD
  const auto no_prefix = Tokenizer::from_pieces(vocab({{kSp + "a", -1}, {"a", -3}}), 1, 2, 0, false, "t");
  CHECK(texts(no_prefix, no_prefix.encode("a", false)) == std::vector<std::string>{"a"});
}

TEST_CASE("without byte pieces, unknown characters become one <unk> per run") {
  std::vector<Piece> p = {{"<unk>", 0, PieceType::Unknown}, {"<s>", 0, PieceType::Control}, {"</s>", 0, PieceType::Control},
                          {kSp, -1}, {"a", -1}};
  const auto t = Tokenizer::from_pieces(p, 1, 2, 0, true, "t");
  CHECK(t.encode("xyz a", false) == std::vector<int32_t>{3, 0, 3, 4});
  CHECK(decode(t, t.encode("xyz a", false)) == " \xE2\x81\x87  a");
}

TEST_CASE("user-defined pieces are matched whole; unused pieces are split back") {
  const auto t = Tokenizer::from_pieces(vocab({{"a", -1}, {"b", -1}, {"<tag>", 0, PieceType::UserDefined},
                                               {"ab", -0.5f, PieceType::Unused}, {"abc", -0.7f}, {"c", -1}, {"a<", 5}}),
                                        1, 2, 0, false, "t");
  CHECK(texts(t, t.encode("a<tag>b", false)) == std::vector<std::string>{"a", "<tag>", "b"});
  CHECK(texts(t, t.encode("ab", false)) == std::vector<std::string>{"a", "b"});
  CHECK(texts(t, t.encode("abc", false)) == std::vector<std::string>{"abc"});  // "ab" as a step to "abc"
}

TEST_CASE("encoding a long text is not quadratic") {
  const auto t = Tokenizer::from_pieces(vocab({{"a", -1}, {"aa", -2}, {"aaaa", -3}, {"b", -1}, {"ab", -1.5f}}), 1, 2, 0,
                                        false, "t");
  std::string text;
  for (int i = 0; i < 200000; ++i) text += (i % 7 == 3) ? 'b' : 'a';
  const auto ids = t.encode(text, false);
  CHECK(ids.size() < text.size() / 2);
  CHECK(decode(t, ids) == text);
}

TEST_CASE("piece access, token bytes and usage errors") {
  const auto t = Tokenizer::from_pieces(vocab({{kSp + "x" + kSp, -1}}), 1, 2, 0, true, "tiny");
  CHECK(t.vocab_size() == 260);
  CHECK(t.token_bytes(259) == " x ");
  CHECK(t.token_bytes(1).empty());
  CHECK(t.token_bytes(3 + 0x41) == "A");
  CHECK(t.token_bytes(0) == " \xE2\x81\x87 ");
  CHECK(error_of([&] { t.piece(260); }).find("tiny: token id 260 is out of range") != std::string::npos);
  CHECK_THROWS_AS(t.piece(-1), InputError);
  CHECK_THROWS_AS(decode(t, std::vector<int32_t>{1, 999}), InputError);
  const auto no_bos = Tokenizer::from_pieces(vocab({}), -1, -1, 0, true, "t");
  CHECK_THROWS_AS(no_bos.encode("x", true), UsageError);
  CHECK(no_bos.encode("x", false).size() == 4);  // ▁ x as bytes
  CHECK(error_of([] { Tokenizer::from_pieces(vocab({}), 1, 2, 400, true, "t"); }).find("unk_id 400 is out of range") !=
        std::string::npos);
  CHECK_THROWS_AS(Tokenizer::from_pieces({}, -1, -1, 0, true, "t"), InputError);
  CHECK_THROWS_AS(Tokenizer::from_pieces({{"<0xZZ>", 0, PieceType::Byte}}, -1, -1, 0, true, "t"), InputError);
  CHECK_THROWS_AS(Tokenizer::from_pieces({{"x", 0, static_cast<PieceType>(9)}}, -1, -1, 0, true, "t"), InputError);
}

TEST_CASE("StreamDecoder holds back partial UTF-8 across byte tokens") {
  const auto t = Tokenizer::from_pieces(vocab({{kSp + "a", -1}, {kSp, -2}, {"b", -3}}), 1, 2, 0, true, "t");
  const int32_t a = id_of(t, kSp + "a"), sp = id_of(t, kSp), b = id_of(t, "b");
  const auto byte = [](int v) { return 3 + v; };
  StreamDecoder d(t);
  CHECK(d.push(1).empty());  // BOS is invisible and keeps the start state
  CHECK(d.push(a) == "a");   // the dummy-prefix space is dropped once
  CHECK(d.push(a) == " a");
  CHECK(d.push(byte(0xF0)).empty());  // 🙂 = F0 9F 99 82
  CHECK(d.push(byte(0x9F)).empty());
  CHECK(d.push(byte(0x99)).empty());
  CHECK(d.push(byte(0x82)) == "\xF0\x9F\x99\x82");
  CHECK(d.push(byte(0xC3)).empty());
  CHECK(d.push(b) == "\xEF\xBF\xBD" "b");  // interrupted: U+FFFD, then the text
  CHECK(d.push(byte(0xA9)) == "\xEF\xBF\xBD");  // stray continuation byte
  CHECK(d.push(byte('x')) == "x");
  CHECK(d.push(byte(0xE2)).empty());
  CHECK(d.push(byte(0x96)).empty());
  CHECK(d.push(2) == "\xEF\xBF\xBD\xEF\xBF\xBD");  // EOS ends the byte run: E2 96 can no longer complete
  CHECK(d.flush().empty());

  StreamDecoder e(t);
  CHECK(e.push(byte(0xE2)).empty());
  CHECK(e.push(byte(0x28)) == "\xEF\xBF\xBD(");  // E2 28: the lead byte is invalid, '(' is fine
  CHECK(e.push(byte(0xC3)).empty());
  CHECK(e.flush() == "\xEF\xBF\xBD");

  // Only one leading space goes: "▁" then "▁a" decodes to " a".
  CHECK(decode(t, std::vector<int32_t>{1, sp, a}) == " a");
  CHECK(decode(t, std::vector<int32_t>{b, a}) == "b a");
  CHECK(decode(t, std::vector<int32_t>{byte(' '), a}) == "  a");  // a byte space is text, not the prefix
  StreamDecoder keep(t, false);
  CHECK(keep.push(a) == " a");
  const auto no_prefix = Tokenizer::from_pieces(vocab({{kSp + "a", -1}}), 1, 2, 0, false, "t");
  CHECK(decode(no_prefix, std::vector<int32_t>{259}) == " a");
}

TEST_CASE("protobuf reader: defaults, unknown fields, negative ids, remove_extra_whitespaces") {
  Proto m;
  for (const auto& p : vocab({{kSp + "a", -1}, {kSp, -2}, {"a", -3}})) {
    Proto sp;
    sp.bytes(1, p.text).f32(2, p.score);
    if (p.type != PieceType::Normal) sp.num(3, static_cast<int>(p.type));
    sp.num(99, 7).key(98, 1).s += std::string(8, '\x01');  // unknown varint and fixed64 fields
    m.bytes(1, sp.s);
  }
  m.bytes(17, Proto().bytes(1, "nested unknown").f32(2, 1.0f).s);  // unknown message field
  Proto trainer;
  trainer.num(3, 2).num(35, 1).num(40, 0).num(41, -1).num(43, -1).bytes(2, "model_prefix");
  m.bytes(2, trainer.s);
  const std::string base = m.s;
  // No NormalizerSpec: SentencePiece's defaults (dummy prefix, remove extra whitespace).
  const auto t = parse(base);
  CHECK(t.vocab_size() == 262);
  CHECK(t.bos_id() == -1);
  CHECK(t.eos_id() == 2);
  CHECK(t.add_dummy_prefix());
  CHECK(t.remove_extra_whitespaces());
  CHECK(t.piece(259).score == -1.0f);
  CHECK(t.piece(3).type == PieceType::Byte);
  CHECK(texts(t, t.encode("  a   a  ", false)) == std::vector<std::string>{kSp + "a", kSp + "a"});
  CHECK(t.encode("   ", false).empty());
  CHECK(decode(t, std::vector<int32_t>{260, 260, 259}) == "a");  // leading spaces all dropped

  const auto keep = parse(base + Proto().bytes(3, Proto().bytes(1, "identity").num(3, 0).num(4, 0).s).s);
  CHECK_FALSE(keep.add_dummy_prefix());
  CHECK(texts(keep, keep.encode(" a  ", false)) == std::vector<std::string>{kSp + "a", kSp, kSp});
  const auto no_escape = parse(base + Proto().bytes(3, Proto().num(4, 0).num(5, 0).s).s);
  CHECK(texts(no_escape, no_escape.encode("a", false)) == std::vector<std::string>{"<0x20>", "a"});
}

TEST_CASE("protobuf reader rejects malformed and unsupported models clearly") {
  const std::string good = write_sentencepiece_model(vocab({{kSp + "a", -1}, {"a", -2}}), 0, 1, 2, true, true);
  CHECK(parse(good).vocab_size() == 261);
  // Every truncation either parses (cut between whole fields) or throws InputError; never crashes.
  int threw = 0;
  for (std::size_t n = 0; n < good.size(); ++n) {
    try {
      parse(good.substr(0, n));
    } catch (const InputError& e) {
      ++threw;
      CHECK(std::string(e.what()).starts_with("test.model: "));
    }
  }
  CHECK(threw > static_cast<int>(good.size()) * 9 / 10);
  CHECK(error_of([&] { parse(good.substr(0, 3)); }).find("exceeds") != std::string::npos);
  CHECK(error_of([&] { parse(std::string("\x0a\xff", 2)); }).find("truncated varint at offset 1") != std::string::npos);
  CHECK(error_of([&] { parse(std::string(12, '\xff')); }).find("varint too long at offset 0") != std::string::npos);
  CHECK(error_of([&] { parse(Proto().key(1, 2).varint(uint64_t{1} << 62).s); }).find("length 4611686018427387904") !=
        std::string::npos);
  CHECK(error_of([&] { parse(Proto().key(7, 3).s); }).find("unsupported wire type 3") != std::string::npos);
  CHECK(error_of([&] { parse(Proto().num(1, 5).s); }).find("wire type 0, expected 2") != std::string::npos);
  CHECK(error_of([&] { parse(Proto().bytes(1, Proto().bytes(1, "x").num(3, 9).s).s); }).find("invalid type 9") !=
        std::string::npos);
  CHECK(error_of([&] { parse(std::string()); }).find("empty") != std::string::npos);
  // Unigram (the proto default) and other model types are refused by name.
  CHECK(error_of([&] { parse(Proto().bytes(1, Proto().bytes(1, "<unk>").num(3, 2).s).s); }).find("Unigram") !=
        std::string::npos);
  CHECK(error_of([&] { parse(good + Proto().bytes(2, Proto().num(3, 4).s).s); }).find("char") != std::string::npos);
  CHECK(error_of([&] { parse(good + Proto().bytes(2, Proto().num(40, 999).s).s); }).find("unk_id 999 is out of range") !=
        std::string::npos);
  CHECK(error_of([&] { parse(good + Proto().bytes(3, Proto().bytes(2, "xx").s).s); }).find("not supported") !=
        std::string::npos);
  // Garbage: random bytes never crash the reader.
  std::mt19937 rng(42);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string junk = trial % 2 ? good : std::string(64, '\0');
    for (int k = 0; k < 8; ++k) junk[rng() % junk.size()] = static_cast<char>(rng());
    try {
      parse(junk);
    } catch (const InputError&) {
    }
  }
}

TEST_CASE("write_sentencepiece_model round trips") {
  auto pieces = vocab({{kSp + "a", -1.5f}, {"a", -2}, {"<tag>", 0, PieceType::UserDefined}, {"u", 0, PieceType::Unused},
                       {"\xE2\x80\x8A", -1e9f}});
  const std::string bytes = write_sentencepiece_model(pieces, 0, 1, 2, true, false);
  const auto t = parse(bytes);
  REQUIRE(t.vocab_size() == static_cast<int32_t>(pieces.size()));
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    CHECK(t.pieces()[i].text == pieces[i].text);
    CHECK(t.pieces()[i].score == pieces[i].score);
    CHECK(t.pieces()[i].type == pieces[i].type);
  }
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  CHECK_FALSE(t.add_dummy_prefix());
  CHECK_FALSE(t.remove_extra_whitespaces());
  const auto reference = Tokenizer::from_pieces(pieces, 1, 2, 0, false, "ref");
  for (const char* s : {"a a<tag>", " aa  a\n", "\xE2\x80\x8A", "x"}) CHECK(t.encode(s, true) == reference.encode(s, true));
  CHECK_THROWS_AS(write_sentencepiece_model(pieces, 0, 1, 9999, true, true), UsageError);
  CHECK(parse(write_sentencepiece_model(pieces, 0, -1, -1, true, true)).bos_id() == -1);
}

TEST_CASE("llama2.c tokenizer.bin: conversion and malformed files") {
  std::vector<std::pair<std::string, float>> tokens = {{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    tokens.emplace_back(name, 0.0f);
  }
  tokens.insert(tokens.end(), {{" a", -1}, {" ", -2}, {"a", -3}, {"b", -3}});
  const std::string good = llama2c_bytes(tokens);
  const auto path = temp_file("good.bin", good);
  const auto t = Tokenizer::from_llama2c_file(path.string());
  CHECK(t.vocab_size() == 263);
  CHECK(t.piece(1).text == "<s>");
  CHECK(t.piece(1).type == PieceType::Control);
  CHECK(t.piece(0).type == PieceType::Unknown);
  CHECK(t.piece(3 + 10).type == PieceType::Byte);
  CHECK(t.piece(259).text == kSp + "a");
  CHECK(texts(t, t.encode("a b\n", true)) == std::vector<std::string>{"<s>", kSp + "a", kSp, "b", "<0x0A>"});
  CHECK(decode(t, t.encode("a b\n", true)) == "a b\n");

  const auto bad = [&](const std::string& name, const std::string& contents) {
    const auto p = temp_file(name, contents);
    const std::string e = error_of([&] { Tokenizer::from_llama2c_file(p.string()); });
    std::filesystem::remove(p);
    CHECK(e.starts_with(p.string() + ": "));
    return e;
  };
  for (std::size_t n = 0; n < good.size(); n += 7) {
    const std::string cut = good.substr(0, n);
    // Cuts that end exactly after a token are valid files with fewer tokens.
    const auto p = temp_file("cut.bin", cut);
    try {
      Tokenizer::from_llama2c_file(p.string());
    } catch (const InputError& e) {
      CHECK(std::string(e.what()).starts_with(p.string() + ": "));
    }
    std::filesystem::remove(p);
  }
  CHECK(bad("empty.bin", "").find("truncated at offset 0 reading the max_token_length") != std::string::npos);
  CHECK(bad("short.bin", good.substr(0, 10)).find("truncated at offset 8 reading the length of token 0") !=
        std::string::npos);
  CHECK(bad("few.bin", llama2c_bytes({{"<unk>", 0}})).find("expected at least <unk>, <s>, </s>") != std::string::npos);
  std::string huge = llama2c_bytes({{"<unk>", 0}});
  huge[8] = huge[9] = huge[10] = '\xff';
  huge[11] = '\x7f';
  CHECK(bad("huge.bin", huge).find("token 0 has length 2147483647") != std::string::npos);
  huge[11] = '\xff';
  CHECK(bad("negative.bin", huge).find("has length -1") != std::string::npos);
  CHECK(bad("maxlen.bin", llama2c_bytes({}, -3)).find("invalid max_token_length -3") != std::string::npos);
  CHECK(error_of([] { Tokenizer::from_llama2c_file("/nonexistent/tokenizer.bin"); }).find("/nonexistent/tokenizer.bin") !=
        std::string::npos);
  std::filesystem::remove(path);
}

TEST_CASE("train_bpe learns a deterministic vocabulary that round trips") {
  const std::string corpus =
      "Once upon a time, there was a little girl named Lily.\nShe loved to play outside in the park.\n"
      "One day, she saw a big, red ball. She wanted to play with it.\nLily's mom said, \"Let's go to the park.\"\n"
      "Über café naïve — 日本語\n";
  const auto pieces = train_bpe(corpus, 400);
  REQUIRE(pieces.size() == 400);
  CHECK(pieces == train_bpe(corpus, 400));
  CHECK(pieces[0].type == PieceType::Unknown);
  CHECK(pieces[1].text == "<s>");
  CHECK(pieces[3].text == "<0x00>");
  CHECK(pieces[258].text == "<0xFF>");
  CHECK(pieces[259].type == PieceType::Normal);
  for (std::size_t i = 260; i < pieces.size() && pieces[i].type == PieceType::Normal; ++i)
    CHECK(pieces[i].score < pieces[i - 1].score);
  const auto has = [&](const std::string& text) {
    return std::any_of(pieces.begin(), pieces.end(), [&](const Piece& q) { return q.text == text; });
  };
  CHECK(has(kSp));
  CHECK(has("\xE6\x97\xA5"));  // every character of a small corpus fits
  CHECK(has(kSp + "the"));
  const auto t = Tokenizer::from_pieces(pieces, 1, 2, 0, true, "trained");
  const std::string first = "Once upon a time, there was a little girl named Lily.";
  CHECK(t.encode(first, false).size() < first.size() / 3);
  for (std::string_view line : {"Once upon a time, there was a little girl named Lily.", " She  loved\tthe park. ",
                                "Über café 日本語 🙂", "x"}) {
    CHECK(decode(t, t.encode(line, true)) == line);
  }
  // A tiny corpus runs out of merges: the rest is padding.
  const auto small = train_bpe("ab ab", 270);
  REQUIRE(small.size() == 270);
  CHECK(small.back().type == PieceType::Unused);
  CHECK(train_bpe("", 259).size() == 259);
  CHECK_THROWS_AS(train_bpe("abc", 258), UsageError);
  // Written out and read back, it encodes the same.
  const auto loaded = parse(write_sentencepiece_model(pieces, 0, 1, 2, true, true));
  CHECK(loaded.encode(corpus, true) == t.encode(corpus, true));
  CHECK(decode(loaded, loaded.encode(corpus, true)) == corpus);
}

TEST_CASE("encode then decode is the identity on random text") {
  const auto t = Tokenizer::from_pieces(train_bpe("the cat sat on the mat\nthe dog ate the cat's food\n", 300), 1, 2, 0,
                                        true, "t");
  const std::vector<std::string> alphabet = {"a", "t", "h", "e", " ", "  ", "\n", "\xC3\xA9", "\xE6\x97\xA5",
                                             "\xF0\x9F\x99\x82", "cat", "the", "<s>", "\t"};
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::string s;
    const int n = static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) s += alphabet[rng() % alphabet.size()];
    const auto ids = t.encode(s, trial % 2 == 0);
    INFO("text: '" << s << "'");
    CHECK(decode(t, ids) == s);
    StreamDecoder d(t);
    std::string streamed;
    for (int32_t id : ids) streamed += d.push(id);
    CHECK(streamed + d.flush() == s);
  }
}
