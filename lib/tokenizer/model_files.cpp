// Loading tokenizer.model (SentencePiece's ModelProto, parsed by hand from the protobuf wire
// format) and llama2.c's tokenizer.bin, and writing a tokenizer.model.
#include <bit>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <utility>

#include "core/mapped_file.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer/utf8.hpp"
#include "weft/error.hpp"

namespace weft::tok {

namespace {

enum WireType { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// A cursor over one protobuf message. Offsets in errors are from the start of the file.
class WireReader {
 public:
  WireReader(std::span<const std::byte> data, std::size_t base, const std::string& name)
      : data_(data), base_(base), name_(name) {}

  bool done() const { return pos_ == data_.size(); }

  uint64_t varint() {
    const std::size_t start = pos_;
    uint64_t value = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (pos_ == data_.size()) fail("truncated varint at offset " + std::to_string(base_ + start));
      const auto b = static_cast<uint8_t>(data_[pos_++]);
      if (shift == 63 && b > 1) break;
      value |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return value;
    }
    fail("varint too long at offset " + std::to_string(base_ + start));
  }

  // Reads a field key; returns {field number, wire type}.
  std::pair<uint32_t, int> key() {
    const std::size_t start = pos_;
    const uint64_t k = varint();
    const uint64_t field = k >> 3;
    if (field == 0 || field > 0x1FFFFFFF)
      fail("invalid field number " + std::to_string(field) + " at offset " + std::to_string(base_ + start));
    return {static_cast<uint32_t>(field), static_cast<int>(k & 7)};
  }

  uint32_t fixed32() {
    const auto b = take(4, "fixed32");
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[static_cast<std::size_t>(i)]);
    return v;
  }

  // A length-delimited field's payload, and the file offset where it starts.
  std::pair<std::span<const std::byte>, std::size_t> bytes() {
    const std::size_t start = pos_;
    const uint64_t len = varint();
    if (len > data_.size() - pos_)
      fail("length " + std::to_string(len) + " at offset " + std::to_string(base_ + start) + " exceeds the " +
           std::to_string(data_.size() - pos_) + " bytes left in its message");
    const std::size_t offset = base_ + pos_;
    return {take(static_cast<std::size_t>(len), "bytes"), offset};
  }

  std::string string() {
    const auto b = bytes().first;
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }

  void skip(int wire_type) {
    switch (wire_type) {
      case kVarint: varint(); return;
      case kFixed64: take(8, "fixed64"); return;
      case kLengthDelimited: bytes(); return;
      case kFixed32: take(4, "fixed32"); return;
      default:
        fail("unsupported wire type " + std::to_string(wire_type) + " at offset " + std::to_string(base_ + pos_));
    }
  }

  // Checks that a known field arrived with the wire type its declaration implies.
  void expect(uint32_t field, int got, int want, const char* message) {
    if (got != want)
      fail(std::string(message) + " field " + std::to_string(field) + " has wire type " + std::to_string(got) +
           ", expected " + std::to_string(want) + " (before offset " + std::to_string(base_ + pos_) + ")");
  }

  [[noreturn]] void fail(const std::string& what) const { throw InputError(name_ + ": " + what); }

 private:
  std::span<const std::byte> take(std::size_t n, const char* what) {
    if (n > data_.size() - pos_)
      fail(std::string("truncated ") + what + " at offset " + std::to_string(base_ + pos_));
    const auto out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  std::span<const std::byte> data_;
  std::size_t pos_ = 0;
  std::size_t base_;
  const std::string& name_;
};

WireReader sub_reader(WireReader& parent, const std::string& name) {
  const auto [payload, offset] = parent.bytes();
  return WireReader(payload, offset, name);
}

int32_t as_int32(uint64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

// Protobuf writer helpers.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
void put_key(std::string& out, uint32_t field, int wire_type) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
}
void put_int(std::string& out, uint32_t field, int64_t v) {  // int32/bool/enum: negatives take 10 bytes
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(v));
}
void put_bytes(std::string& out, uint32_t field, std::string_view payload) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, payload.size());
  out += payload;
}
void put_float(std::string& out, uint32_t field, float f) {
  put_key(out, field, kFixed32);
  const auto bits = std::bit_cast<uint32_t>(f);
  for (int i = 0; i < 4; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xFF);
}

}  // namespace

Tokenizer Tokenizer::from_sentencepiece_file(const std::string& path) {
  const MappedFile file(path);
  return from_sentencepiece_bytes(file.bytes(), path);
}

Tokenizer Tokenizer::from_sentencepiece_bytes(std::span<const std::byte> data, const std::string& name) {
  if (data.empty()) throw InputError(name + ": empty file, expected a SentencePiece model");
  std::vector<Piece> pieces;
  Options o;  // SentencePiece's proto defaults, except where noted
  o.byte_fallback = false;
  o.remove_extra_whitespaces = true;
  int32_t model_type = 1;  // UNIGRAM
  bool whitespace_as_suffix = false;
  std::string normalizer_name, charsmap;

  WireReader model(data, 0, name);
  while (!model.done()) {
    const auto [field, wt] = model.key();
    if (field == 1) {  // SentencePiece
      model.expect(field, wt, kLengthDelimited, "ModelProto");
      WireReader r = sub_reader(model, name);
      Piece& p = pieces.emplace_back();
      uint64_t type = 1;
      while (!r.done()) {
        const auto [f, w] = r.key();
        if (f == 1) { r.expect(f, w, kLengthDelimited, "SentencePiece"); p.text = r.string(); }
        else if (f == 2) { r.expect(f, w, kFixed32, "SentencePiece"); p.score = std::bit_cast<float>(r.fixed32()); }
        else if (f == 3) { r.expect(f, w, kVarint, "SentencePiece"); type = r.varint(); }
        else r.skip(w);
      }
      if (type < 1 || type > 6)
        model.fail("piece " + std::to_string(pieces.size() - 1) + " ('" + p.text + "') has invalid type " +
                   std::to_string(type));
      p.type = static_cast<PieceType>(type);
    } else if (field == 2) {  // TrainerSpec
      model.expect(field, wt, kLengthDelimited, "ModelProto");
      WireReader r = sub_reader(model, name);
      while (!r.done()) {
        const auto [f, w] = r.key();
        if (f != 3 && f != 24 && f != 35 && (f < 40 || f > 42)) {
          r.skip(w);
          continue;
        }
        r.expect(f, w, kVarint, "TrainerSpec");
        const uint64_t v = r.varint();
        if (f == 3) model_type = as_int32(v);
        else if (f == 24) whitespace_as_suffix = v != 0;
        else if (f == 35) o.byte_fallback = v != 0;
        else if (f == 40) o.unk_id = as_int32(v);
        else if (f == 41) o.bos_id = as_int32(v);
        else o.eos_id = as_int32(v);
      }
    } else if (field == 3) {  // NormalizerSpec
      model.expect(field, wt, kLengthDelimited, "ModelProto");
      WireReader r = sub_reader(model, name);
      while (!r.done()) {
        const auto [f, w] = r.key();
        if (f == 1) { r.expect(f, w, kLengthDelimited, "NormalizerSpec"); normalizer_name = r.string(); }
        else if (f == 2) { r.expect(f, w, kLengthDelimited, "NormalizerSpec"); charsmap = r.string(); }
        else if (f == 3) { r.expect(f, w, kVarint, "NormalizerSpec"); o.add_dummy_prefix = r.varint() != 0; }
        else if (f == 4) { r.expect(f, w, kVarint, "NormalizerSpec"); o.remove_extra_whitespaces = r.varint() != 0; }
        else if (f == 5) { r.expect(f, w, kVarint, "NormalizerSpec"); o.escape_whitespaces = r.varint() != 0; }
        else r.skip(w);
      }
    } else {
      model.skip(wt);
    }
  }

  static const char* const kModelTypes[] = {"?", "Unigram", "BPE", "word", "char"};
  if (model_type != 2)
    throw InputError(name + ": model_type is " +
                     (model_type >= 1 && model_type <= 4 ? kModelTypes[model_type] : std::to_string(model_type)) +
                     "; weft supports only BPE SentencePiece models");
  if (whitespace_as_suffix) throw InputError(name + ": treat_whitespace_as_suffix is not supported");
  if (!charsmap.empty())
    throw InputError(name + ": normalization rules '" + normalizer_name +
                     "' are not supported (only identity normalization, as Llama and Mistral use)");
  return Tokenizer(std::move(pieces), o, name);
}

Tokenizer Tokenizer::from_llama2c_file(const std::string& path) {
  const MappedFile file(path);
  const auto data = file.bytes();
  std::size_t pos = 0;
  const auto read_u32 = [&](const char* what, std::size_t token) {
    if (data.size() - pos < 4)
      throw InputError(path + ": truncated at offset " + std::to_string(pos) + " reading the " + what +
                       (token == SIZE_MAX ? std::string() : " of token " + std::to_string(token)));
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(data[pos + static_cast<std::size_t>(i)]);
    pos += 4;
    return v;
  };
  const auto max_len = static_cast<int32_t>(read_u32("max_token_length", SIZE_MAX));
  if (max_len <= 0) throw InputError(path + ": invalid max_token_length " + std::to_string(max_len));
  std::vector<Piece> pieces;
  while (pos < data.size()) {
    const std::size_t i = pieces.size();
    Piece& p = pieces.emplace_back();
    p.score = std::bit_cast<float>(read_u32("score", i));
    const auto len = static_cast<int32_t>(read_u32("length", i));
    if (len < 0 || static_cast<std::size_t>(len) > data.size() - pos)
      throw InputError(path + ": token " + std::to_string(i) + " has length " + std::to_string(len) + " at offset " +
                       std::to_string(pos - 4) + " but " + std::to_string(data.size() - pos) + " bytes remain");
    const std::string_view raw(reinterpret_cast<const char*>(data.data() + pos), static_cast<std::size_t>(len));
    pos += static_cast<std::size_t>(len);
    for (char c : raw) {  // llama2.c's export wrote U+2581 as ' '
      if (c == ' ') p.text += utf8::kSpaceSymbol;
      else p.text += c;
    }
  }
  if (pieces.size() < 3)
    throw InputError(path + ": has " + std::to_string(pieces.size()) + " tokens, expected at least <unk>, <s>, </s>");
  // The export wrote <s> and </s> as "\n<s>\n" and "\n</s>\n".
  pieces[0].type = PieceType::Unknown;
  pieces[1] = {"<s>", pieces[1].score, PieceType::Control};
  pieces[2] = {"</s>", pieces[2].score, PieceType::Control};
  bool any_byte = false;
  for (std::size_t i = 3; i < pieces.size(); ++i) {
    const std::string& t = pieces[i].text;
    if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
        std::isxdigit(static_cast<unsigned char>(t[4]))) {
      pieces[i].type = PieceType::Byte;
      any_byte = true;
    }
  }
  Options o;
  o.byte_fallback = any_byte;
  return Tokenizer(std::move(pieces), o, path);
}

std::string write_sentencepiece_model(const std::vector<Piece>& pieces, int unk_id, int bos_id, int eos_id,
                                      bool byte_fallback, bool add_dummy_prefix) {
  const auto n = static_cast<int64_t>(pieces.size());
  const auto check = [&](const char* what, int id, bool optional) {
    if ((optional && id == -1) || (id >= 0 && id < n)) return;
    throw UsageError(std::string("write_sentencepiece_model: ") + what + " " + std::to_string(id) +
                     " is out of range for " + std::to_string(n) + " pieces");
  };
  check("unk_id", unk_id, false);
  check("bos_id", bos_id, true);
  check("eos_id", eos_id, true);

  std::string out, sub;
  for (const Piece& p : pieces) {
    sub.clear();
    put_bytes(sub, 1, p.text);
    put_float(sub, 2, p.score);
    put_int(sub, 3, static_cast<int>(p.type));
    put_bytes(out, 1, sub);
  }
  sub.clear();
  put_int(sub, 3, 2);  // model_type: BPE
  put_int(sub, 4, n);  // vocab_size
  put_int(sub, 35, byte_fallback ? 1 : 0);
  put_int(sub, 40, unk_id);
  put_int(sub, 41, bos_id);
  put_int(sub, 42, eos_id);
  put_int(sub, 43, -1);  // pad_id: none
  put_bytes(out, 2, sub);
  sub.clear();
  put_bytes(sub, 1, "identity");
  put_int(sub, 3, add_dummy_prefix ? 1 : 0);
  put_int(sub, 4, 0);  // remove_extra_whitespaces
  put_int(sub, 5, 1);  // escape_whitespaces
  put_bytes(out, 3, sub);
  return out;
}

}  // namespace weft::tok
