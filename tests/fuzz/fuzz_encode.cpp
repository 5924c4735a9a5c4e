// Fuzz target: the tokenizer on arbitrary text and arbitrary ids. The first input byte picks a
// tokenizer: one trained here (always available) or, with WEFT_FUZZ_MODELS set to a directory
// such as ../shared/models, the real tokenizer.model, tokenizer.bin and tok512.bin in it. The
// rest is the text to encode, and also, read as int32s, ids to decode.
//
// Checked: every id is in the vocabulary; the streaming decoder gives the same text as decode();
// and for valid UTF-8 without a literal "▁", decode(encode(text)) == text (these vocabularies
// have byte fallback and keep whitespace as it is, so the round trip is exact).
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz_common.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer/utf8.hpp"
#include "weft/error.hpp"

namespace {
using weft::tok::Tokenizer;

std::vector<std::unique_ptr<Tokenizer>> load_tokenizers() {
  std::vector<std::unique_ptr<Tokenizer>> out;
  // The trained vocabulary goes through write_sentencepiece_model and back, as a real file would.
  const auto pieces = weft::tok::train_bpe(
      "the cat sat on the mat\nthe dog ate the cat's food\nOnce upon a time, caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\n", 320);
  const std::string proto = weft::tok::write_sentencepiece_model(pieces, 0, 1, 2, true, true);
  out.push_back(std::make_unique<Tokenizer>(
      Tokenizer::from_sentencepiece_bytes(std::as_bytes(std::span(proto.data(), proto.size())), "trained")));
  if (const char* dir = std::getenv("WEFT_FUZZ_MODELS")) {
    const std::string d = dir;
    out.push_back(std::make_unique<Tokenizer>(Tokenizer::from_sentencepiece_file(d + "/tokenizer.model")));
    out.push_back(std::make_unique<Tokenizer>(Tokenizer::from_llama2c_file(d + "/tokenizer.bin")));
    out.push_back(std::make_unique<Tokenizer>(Tokenizer::from_llama2c_file(d + "/tok512.bin")));
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const int len = weft::tok::utf8::classify(s.substr(i));
    if (len <= 0) return false;
    i += static_cast<std::size_t>(len);
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<std::unique_ptr<Tokenizer>> tokenizers = load_tokenizers();
  if (size == 0) return 0;
  const Tokenizer& t = *tokenizers[data[0] % tokenizers.size()];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  const std::vector<std::int32_t> ids = t.encode(text, (data[0] & 0x80) != 0);
  for (const std::int32_t id : ids)
    if (id < 0 || id >= t.vocab_size()) std::abort();
  const std::string decoded = weft::tok::decode(t, ids);
  // A literal "▁" in the text is a space to SentencePiece, so it decodes as ' ' (as in SentencePiece).
  if (valid_utf8(text) && text.find(weft::tok::utf8::kSpaceSymbol) == std::string_view::npos && decoded != text)
    std::abort();

  // Arbitrary ids: out-of-range ones must be refused with weft::Error, the rest decoded.
  std::vector<std::int32_t> raw((size - 1) / 4);
  if (!raw.empty()) std::memcpy(raw.data(), data + 1, raw.size() * 4);
  std::string whole;
  try {
    whole = weft::tok::decode(t, raw);
  } catch (const weft::Error&) {
    return 0;
  }
  weft::tok::StreamDecoder d(t);
  std::string streamed;
  for (const std::int32_t id : raw) streamed += d.push(id);
  if (streamed + d.flush() != whole) std::abort();
  return 0;
}
